"""Unicode previews of LaTeX symbol names, and what a symbol needs to typeset, for the drawing page.

:func:`glyph` maps a label (``"\\alpha"``) to the character it typesets as
(``"α"``), or ``None`` when there is no single-glyph equivalent. Plain ASCII
labels (``"x"``, ``"+"``) are their own glyph.

:func:`symbol_info` says, as detexify does, which package a symbol needs
(``"amssymb"`` for ``\\mathbb{R}`` and ``\\leqslant``, ``"latexsym"`` for
``\\Box``, ``None`` for a command of the LaTeX kernel) and in which mode it
works: ``"math"``, ``"text"`` or ``"both"``. It is table-driven
(:data:`SYMBOL_INFO`), covering the default model's vocabulary (CROHME), the
kernel's symbols, amssymb, amsmath, latexsym, textcomp and a few common
symbol packages. A label with an argument (``\\mathbb{R}``, ``\\'{e}``) is
looked up by its command (``\\mathbb``). Plain letters, digits and
punctuation work in both modes, except ``<``, ``>`` and ``|``, which are
math (in text they come out as other glyphs in the default font encoding).

**Anything else gets the default**: math mode, no package, and
``known=False``. A user-taught label such as ``\\mysymbol`` therefore shows as
a math-mode command of no package, which is right for a macro defined in the
document and harmless otherwise.

:data:`LOOKALIKES` lists the symbols that no recognizer can tell apart from the
drawing alone (``|`` and ``1``, ``o`` and ``0``, ...): only the surrounding
expression decides. :func:`lookalike_groups` and :func:`top1_up_to_lookalikes`
score a prediction as right when it lands in the true symbol's group, a figure
reported *beside* the strict top-1, never instead of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["glyph", "GLYPHS", "symbol_info", "SymbolInfo", "SYMBOL_INFO", "MODES", "LOOKALIKES", "lookalike_groups", "top1_up_to_lookalikes"]

#: Groups of symbols drawn alike and told apart only by context (a vertical bar and a one,
#: a letter o and a zero, upper and lower case C and X, and the times sign and x).
LOOKALIKES: tuple[tuple[str, ...], ...] = (("|", "1"), ("o", "0"), ("C", "c"), ("X", "x", "\\times"))


def lookalike_groups(vocab) -> list[int]:
    """One group number per class of ``vocab``: classes of one :data:`LOOKALIKES` group
    share the number of the group's first class in ``vocab``; every other class has its own index."""
    if isinstance(vocab, (str, bytes)):
        raise TypeError("vocab must be a sequence of class labels, not one string")
    vocab = [str(v) for v in vocab]
    index = {v: i for i, v in enumerate(vocab)}
    group = list(range(len(vocab)))
    for members in LOOKALIKES:
        present = [index[m] for m in members if m in index]
        for i in present:
            group[i] = min(present)
    return group


def top1_up_to_lookalikes(predicted, target, vocab) -> float:
    """The fraction of predictions (class indices into ``vocab``) in the same look-alike
    group as their target; equal to plain top-1 when ``vocab`` has no look-alikes."""
    import numpy as np

    pred, true = np.asarray(predicted), np.asarray(target)
    if pred.shape != true.shape or pred.ndim != 1:
        raise ValueError(f"predicted and target must be 1-D and of one length, got shapes {pred.shape} and {true.shape}")
    if len(pred) == 0:
        raise ValueError("no predictions to score")
    group = np.asarray(lookalike_groups(vocab))
    if pred.min() < 0 or true.min() < 0 or max(pred.max(), true.max()) >= len(group):
        raise ValueError(f"class indices must lie in [0, {len(group)}) for a vocabulary of {len(group)} classes")
    return float((group[pred] == group[true]).mean())

GLYPHS: dict[str, str] = {
    # Greek
    "\\alpha": "α", "\\beta": "β", "\\gamma": "γ", "\\delta": "δ", "\\epsilon": "ϵ", "\\varepsilon": "ε",
    "\\zeta": "ζ", "\\eta": "η", "\\theta": "θ", "\\vartheta": "ϑ", "\\iota": "ι", "\\kappa": "κ",
    "\\lambda": "λ", "\\mu": "μ", "\\nu": "ν", "\\xi": "ξ", "\\pi": "π", "\\varpi": "ϖ", "\\rho": "ρ",
    "\\varrho": "ϱ", "\\sigma": "σ", "\\varsigma": "ς", "\\tau": "τ", "\\upsilon": "υ", "\\phi": "ϕ",
    "\\varphi": "φ", "\\chi": "χ", "\\psi": "ψ", "\\omega": "ω",
    "\\Gamma": "Γ", "\\Delta": "Δ", "\\Theta": "Θ", "\\Lambda": "Λ", "\\Xi": "Ξ", "\\Pi": "Π",
    "\\Sigma": "Σ", "\\Upsilon": "Υ", "\\Phi": "Φ", "\\Psi": "Ψ", "\\Omega": "Ω",
    "\\varkappa": "ϰ", "\\digamma": "ϝ",
    # operators and relations
    "\\pm": "±", "\\mp": "∓", "\\times": "×", "\\div": "÷", "\\cdot": "⋅", "\\ast": "∗", "\\star": "⋆",
    "\\circ": "∘", "\\bullet": "∙", "\\leq": "≤", "\\geq": "≥", "\\neq": "≠", "\\lt": "<", "\\gt": ">",
    "\\le": "≤", "\\ge": "≥", "\\ne": "≠",
    "\\approx": "≈", "\\equiv": "≡", "\\sim": "∼", "\\simeq": "≃", "\\cong": "≅", "\\propto": "∝",
    "\\ll": "≪", "\\gg": "≫", "\\in": "∈", "\\notin": "∉", "\\ni": "∋", "\\subset": "⊂", "\\supset": "⊃",
    "\\subseteq": "⊆", "\\supseteq": "⊇", "\\cup": "∪", "\\cap": "∩", "\\setminus": "∖", "\\emptyset": "∅",
    "\\varnothing": "∅", "\\forall": "∀", "\\exists": "∃", "\\nexists": "∄", "\\neg": "¬", "\\wedge": "∧",
    "\\vee": "∨", "\\oplus": "⊕", "\\otimes": "⊗", "\\perp": "⊥", "\\parallel": "∥", "\\mid": "∣",
    "\\angle": "∠", "\\nabla": "∇", "\\partial": "∂", "\\infty": "∞", "\\prime": "′", "\\hbar": "ℏ",
    "\\ell": "ℓ", "\\Re": "ℜ", "\\Im": "ℑ", "\\aleph": "ℵ", "\\wp": "℘",
    "\\land": "∧", "\\lor": "∨", "\\lnot": "¬", "\\top": "⊤", "\\bot": "⊥", "\\vdash": "⊢", "\\dashv": "⊣",
    "\\models": "⊨", "\\asymp": "≍", "\\doteq": "≐", "\\bowtie": "⋈", "\\smile": "⌣", "\\frown": "⌢",
    "\\prec": "≺", "\\succ": "≻", "\\preceq": "⪯", "\\succeq": "⪰", "\\sqsubseteq": "⊑", "\\sqsupseteq": "⊒",
    "\\sqcup": "⊔", "\\sqcap": "⊓", "\\uplus": "⊎", "\\amalg": "⨿", "\\wr": "≀", "\\odot": "⊙",
    "\\ominus": "⊖", "\\oslash": "⊘", "\\diamond": "⋄", "\\triangle": "△", "\\triangleleft": "◁",
    "\\triangleright": "▷", "\\bigtriangleup": "△", "\\bigtriangledown": "▽", "\\dagger": "†",
    "\\ddagger": "‡", "\\clubsuit": "♣", "\\diamondsuit": "♢", "\\heartsuit": "♡", "\\spadesuit": "♠",
    "\\flat": "♭", "\\natural": "♮", "\\sharp": "♯", "\\surd": "√", "\\imath": "ı", "\\jmath": "ȷ",
    "\\backslash": "\\", "\\colon": ":",
    # amssymb
    "\\leqslant": "⩽", "\\geqslant": "⩾", "\\leqq": "≦", "\\geqq": "≧", "\\lesssim": "≲", "\\gtrsim": "≳",
    "\\lll": "⋘", "\\ggg": "⋙", "\\nleq": "≰", "\\ngeq": "≱", "\\nless": "≮", "\\ngtr": "≯",
    "\\subsetneq": "⊊", "\\supsetneq": "⊋", "\\nsubseteq": "⊈", "\\nsupseteq": "⊉", "\\Subset": "⋐",
    "\\Supset": "⋑", "\\Cap": "⋒", "\\Cup": "⋓", "\\nsim": "≁", "\\ncong": "≇", "\\nmid": "∤",
    "\\nparallel": "∦", "\\therefore": "∴", "\\because": "∵", "\\square": "□", "\\blacksquare": "■",
    "\\lozenge": "◊", "\\blacklozenge": "⧫", "\\bigstar": "★", "\\blacktriangle": "▲",
    "\\blacktriangledown": "▼", "\\vartriangle": "△", "\\triangleq": "≜", "\\complement": "∁",
    "\\checkmark": "✓", "\\circledR": "®", "\\maltese": "✠", "\\yen": "¥", "\\hslash": "ℏ", "\\eth": "ð",
    "\\beth": "ℶ", "\\gimel": "ℷ", "\\daleth": "ℸ", "\\Bbbk": "𝕜", "\\measuredangle": "∡",
    "\\sphericalangle": "∢", "\\ltimes": "⋉", "\\rtimes": "⋊", "\\boxplus": "⊞", "\\boxminus": "⊟",
    "\\boxtimes": "⊠", "\\boxdot": "⊡", "\\vDash": "⊨", "\\Vdash": "⊩", "\\Vvdash": "⊪",
    "\\intercal": "⊺", "\\dotplus": "∔", "\\divideontimes": "⋇", "\\between": "≬", "\\pitchfork": "⋔",
    "\\twoheadrightarrow": "↠", "\\twoheadleftarrow": "↞", "\\rightrightarrows": "⇉",
    "\\leftleftarrows": "⇇", "\\leftrightarrows": "⇆", "\\rightleftarrows": "⇄",
    "\\curvearrowright": "↷", "\\curvearrowleft": "↶", "\\circlearrowleft": "↺",
    "\\circlearrowright": "↻", "\\rightsquigarrow": "⇝", "\\nrightarrow": "↛", "\\nleftarrow": "↚",
    "\\nRightarrow": "⇏", "\\nLeftarrow": "⇍", "\\nleftrightarrow": "↮", "\\nLeftrightarrow": "⇎",
    "\\upharpoonright": "↾", "\\restriction": "↾", "\\multimap": "⊸", "\\veebar": "⊻",
    "\\barwedge": "⊼", "\\curlyvee": "⋎", "\\curlywedge": "⋏", "\\circledast": "⊛", "\\circledcirc": "⊚",
    "\\circleddash": "⊝", "\\circledS": "Ⓢ", "\\mho": "℧",
    "\\mathbb{R}": "ℝ", "\\mathbb{N}": "ℕ", "\\mathbb{Z}": "ℤ", "\\mathbb{Q}": "ℚ", "\\mathbb{C}": "ℂ",
    "\\mathbb{P}": "ℙ", "\\mathbb{H}": "ℍ", "\\mathbb{1}": "𝟙",
    # latexsym
    "\\Box": "□", "\\Diamond": "◇", "\\Join": "⋈", "\\leadsto": "⇝", "\\sqsubset": "⊏",
    "\\sqsupset": "⊐", "\\lhd": "⊲", "\\rhd": "⊳", "\\unlhd": "⊴", "\\unrhd": "⊵",
    # big operators and roots
    "\\sum": "∑", "\\prod": "∏", "\\coprod": "∐", "\\int": "∫", "\\iint": "∬", "\\iiint": "∭", "\\oint": "∮",
    "\\oiint": "∯", "\\sqrt": "√", "\\bigcup": "⋃", "\\bigcap": "⋂", "\\bigoplus": "⨁",
    "\\bigotimes": "⨂", "\\bigodot": "⨀", "\\bigvee": "⋁", "\\bigwedge": "⋀", "\\biguplus": "⨄",
    "\\bigsqcup": "⨆",
    # arrows
    "\\rightarrow": "→", "\\to": "→", "\\leftarrow": "←", "\\gets": "←", "\\leftrightarrow": "↔",
    "\\Rightarrow": "⇒", "\\Leftarrow": "⇐", "\\Leftrightarrow": "⇔", "\\uparrow": "↑", "\\downarrow": "↓",
    "\\mapsto": "↦", "\\implies": "⟹", "\\iff": "⟺", "\\impliedby": "⟸",
    "\\longrightarrow": "⟶", "\\longleftarrow": "⟵", "\\longleftrightarrow": "⟷", "\\Longrightarrow": "⟹",
    "\\Longleftarrow": "⟸", "\\Longleftrightarrow": "⟺", "\\longmapsto": "⟼", "\\hookrightarrow": "↪",
    "\\hookleftarrow": "↩", "\\nearrow": "↗", "\\searrow": "↘", "\\swarrow": "↙", "\\nwarrow": "↖",
    "\\updownarrow": "↕", "\\Uparrow": "⇑", "\\Downarrow": "⇓", "\\Updownarrow": "⇕",
    "\\rightleftharpoons": "⇌", "\\leftrightharpoons": "⇋", "\\rightharpoonup": "⇀",
    "\\rightharpoondown": "⇁", "\\leftharpoonup": "↼", "\\leftharpoondown": "↽",
    "\\mapsfrom": "↤", "\\lightning": "↯",
    # delimiters and dots
    "\\{": "{", "\\}": "}", "\\langle": "⟨", "\\rangle": "⟩", "\\lfloor": "⌊", "\\rfloor": "⌋",
    "\\lceil": "⌈", "\\rceil": "⌉", "\\|": "‖", "\\ldots": "…", "\\cdots": "⋯", "\\vdots": "⋮",
    "\\ddots": "⋱", "\\dots": "…", "\\llbracket": "⟦", "\\rrbracket": "⟧", "\\coloneqq": "≔",
    "\\ulcorner": "⌜", "\\urcorner": "⌝", "\\llcorner": "⌞", "\\lrcorner": "⌟",
    # text symbols
    "\\S": "§", "\\P": "¶", "\\dag": "†", "\\ddag": "‡", "\\copyright": "©", "\\pounds": "£",
    "\\textbackslash": "\\", "\\textbar": "|", "\\textless": "<", "\\textgreater": ">",
    "\\textbullet": "•", "\\textregistered": "®", "\\texttrademark": "™", "\\textdegree": "°",
    "\\texteuro": "€", "\\textcelsius": "℃", "\\textmu": "µ", "\\textohm": "Ω", "\\textcent": "¢",
    "\\textperthousand": "‰", "\\textonehalf": "½", "\\textmusicalnote": "♪", "\\textdagger": "†",
    "\\textdaggerdbl": "‡", "\\textsection": "§", "\\textparagraph": "¶", "\\textcopyright": "©",
    "\\textsterling": "£", "\\textexclamdown": "¡", "\\textquestiondown": "¿", "\\textellipsis": "…",
    "\\textemdash": "—", "\\textendash": "–", "\\ss": "ß", "\\o": "ø", "\\O": "Ø", "\\ae": "æ",
    "\\AE": "Æ", "\\oe": "œ", "\\OE": "Œ", "\\aa": "å", "\\AA": "Å", "\\l": "ł", "\\L": "Ł", "\\i": "ı",
    "\\dh": "ð", "\\DH": "Ð", "\\th": "þ", "\\TH": "Þ", "\\euro": "€", "\\degree": "°", "\\celsius": "℃",
    "\\ohm": "Ω", "\\micro": "µ", "\\perthousand": "‰", "\\smiley": "☺", "\\frownie": "☹",
    "\\female": "♀", "\\male": "♂", "\\sun": "☼", "\\Lightning": "↯",
    # function names typeset as words
    "\\sin": "sin", "\\cos": "cos", "\\tan": "tan", "\\log": "log", "\\ln": "ln", "\\lim": "lim",
    "\\exp": "exp", "\\max": "max", "\\min": "min",
}  # fmt: skip


def glyph(label: str) -> str | None:
    """The Unicode preview of ``label``, or ``None`` when there is none."""
    if not isinstance(label, str):
        raise TypeError(f"label must be a str, got {type(label).__name__}")
    if label in GLYPHS:
        return GLYPHS[label]
    if label and not label.startswith("\\") and len(label) <= 3 and label.isprintable():
        return label
    return None


# ---------------------------------------------------------------------------- packages and modes
#: The modes :func:`symbol_info` reports: math mode only, text mode only, or either.
MODES = ("math", "text", "both")


@dataclass(frozen=True)
class SymbolInfo:
    """What a symbol needs: the package to load and the mode it works in."""

    package: str | None  #: the package to ``\usepackage``, or None for the LaTeX kernel
    mode: str  #: ``"math"``, ``"text"`` or ``"both"``
    known: bool = True  #: False when the label is not in the table and this is the default
    note: str | None = None  #: a caveat worth showing (``\gt`` is not a LaTeX command)

    def as_dict(self) -> dict:
        """The JSON fields: ``package``, ``mode`` and, when there is one, ``note``."""
        out = {"package": self.package, "mode": self.mode}
        if self.note:
            out["note"] = self.note
        return out


# (package, mode, commands separated by white space); later groups do not repeat earlier ones
_GROUPS: tuple[tuple[str | None, str, str], ...] = (
    (None, "math", r"""
        \alpha \beta \gamma \delta \epsilon \varepsilon \zeta \eta \theta \vartheta \iota \kappa \lambda
        \mu \nu \xi \pi \varpi \rho \varrho \sigma \varsigma \tau \upsilon \phi \varphi \chi \psi \omega
        \Gamma \Delta \Theta \Lambda \Xi \Pi \Sigma \Upsilon \Phi \Psi \Omega
        \pm \mp \times \div \cdot \ast \star \circ \bullet \leq \geq \neq \le \ge \ne \approx \equiv \sim
        \simeq \cong \propto \ll \gg \in \notin \ni \subset \supset \subseteq \supseteq \sqsubseteq
        \sqsupseteq \cup \cap \setminus \emptyset \forall \exists \neg \lnot \wedge \land \vee \lor \oplus
        \ominus \otimes \oslash \odot \perp \parallel \mid \angle \nabla \partial \infty \prime \hbar \ell
        \Re \Im \aleph \wp \top \bot \vdash \dashv \models \asymp \doteq \bowtie \smile \frown \prec \succ
        \preceq \succeq \sqcup \sqcap \uplus \amalg \wr \diamond \triangle \triangleleft \triangleright
        \bigtriangleup \bigtriangledown \dagger \ddagger \clubsuit \diamondsuit \heartsuit \spadesuit
        \flat \natural \sharp \surd \imath \jmath \backslash \colon \vert \Vert
        \sum \prod \coprod \int \oint \sqrt \frac \bigcup \bigcap \bigoplus \bigotimes \bigodot \bigvee
        \bigwedge \biguplus \bigsqcup
        \rightarrow \to \leftarrow \gets \leftrightarrow \Rightarrow \Leftarrow \Leftrightarrow \uparrow
        \downarrow \updownarrow \Uparrow \Downarrow \Updownarrow \mapsto \iff \longrightarrow
        \longleftarrow \longleftrightarrow \Longrightarrow \Longleftarrow \Longleftrightarrow \longmapsto
        \hookrightarrow \hookleftarrow \nearrow \searrow \swarrow \nwarrow \rightleftharpoons
        \rightharpoonup \rightharpoondown \leftharpoonup \leftharpoondown
        \langle \rangle \lfloor \rfloor \lceil \rceil \| \cdots \vdots \ddots
        \sin \cos \tan \cot \sec \csc \arcsin \arccos \arctan \sinh \cosh \tanh \coth \log \ln \lg \exp
        \lim \limsup \liminf \max \min \sup \inf \det \dim \ker \deg \gcd \hom \arg \Pr
        \mathcal \mathrm \mathbf \mathit \mathsf \mathtt \mathnormal
        \vec \hat \bar \tilde \dot \ddot \acute \grave \breve \check \widehat \widetilde \overline
        \underline \overbrace \underbrace \overrightarrow \overleftarrow
    """),
    (None, "both", r"""
        \{ \} \ldots \dots \S \P \dag \ddag \copyright \pounds \$ \% \& \# \_
    """),
    (None, "text", r"""
        \textbackslash \textbar \textless \textgreater \textasciitilde \textasciicircum \textbullet
        \textperiodcentered \textexclamdown \textquestiondown \textregistered \texttrademark
        \textvisiblespace \textemdash \textendash \textellipsis \textdagger \textdaggerdbl \textsection
        \textparagraph \textcopyright \textsterling \textunderscore \textbraceleft \textbraceright
        \ss \SS \o \O \ae \AE \oe \OE \aa \AA \l \L \i \j
        \' \` \^ \" \~ \= \. \c \v \u \H \r \k \b \d \t
        \textit \textbf \textrm \textsf \texttt \textsc \emph
    """),
    ("amssymb", "math", r"""
        \mathbb \mathfrak \Bbbk \varkappa \digamma \beth \gimel \daleth \eth \hslash \complement
        \leqslant \geqslant \leqq \geqq \lesssim \gtrsim \lessapprox \gtrapprox \lll \ggg \lessgtr \gtrless
        \nleq \ngeq \nless \ngtr \nleqslant \ngeqslant \lneq \gneq \lneqq \gneqq \subsetneq \supsetneq
        \varsubsetneq \varsupsetneq \nsubseteq \nsupseteq \subseteqq \supseteqq \Subset \Supset \Cap \Cup
        \nsim \ncong \nmid \nparallel \nshortmid \nshortparallel \nvdash \nvDash \nVdash \nVDash
        \therefore \because \square \blacksquare \lozenge \blacklozenge \bigstar \blacktriangle
        \blacktriangledown \blacktriangleleft \blacktriangleright \vartriangle \vartriangleleft
        \vartriangleright \trianglelefteq \trianglerighteq \ntriangleleft \ntriangleright \triangleq
        \triangledown \measuredangle \sphericalangle \varnothing \nexists \backprime \diagup \diagdown
        \ltimes \rtimes \leftthreetimes \rightthreetimes \boxplus \boxminus \boxtimes \boxdot \vDash
        \Vdash \Vvdash \intercal \dotplus \divideontimes \smallsetminus \centerdot \between \pitchfork
        \backepsilon \varpropto \approxeq \thicksim \thickapprox \backsim \backsimeq \eqsim \circeq
        \doteqdot \risingdotseq \fallingdotseq \bumpeq \Bumpeq \eqcirc \preccurlyeq \succcurlyeq
        \curlyeqprec \curlyeqsucc \precsim \succsim \lessdot \gtrdot \veebar \barwedge \doublebarwedge
        \curlyvee \curlywedge \circledast \circledcirc \circleddash \circledS \mho \Finv \Game
        \twoheadrightarrow \twoheadleftarrow \rightrightarrows \leftleftarrows \leftrightarrows
        \rightleftarrows \upuparrows \downdownarrows \curvearrowright \curvearrowleft \circlearrowleft
        \circlearrowright \rightsquigarrow \leftrightsquigarrow \looparrowleft \looparrowright \Lsh \Rsh
        \Lleftarrow \Rrightarrow \rightarrowtail \leftarrowtail \nrightarrow \nleftarrow \nRightarrow
        \nLeftarrow \nleftrightarrow \nLeftrightarrow \upharpoonright \upharpoonleft \downharpoonright
        \downharpoonleft \restriction \multimap \leftrightharpoons \ulcorner \urcorner \llcorner
        \lrcorner \shortmid \shortparallel
    """),
    ("amssymb", "both", r"""
        \checkmark \circledR \maltese \yen
    """),
    ("amsmath", "math", r"""
        \iint \iiint \iiiint \idotsint \implies \impliedby \boldsymbol \dfrac \tfrac \binom \dbinom
        \tbinom \operatorname \overset \underset \sideset \substack \xrightarrow \xleftarrow
        \overleftrightarrow \underleftarrow \underrightarrow \underleftrightarrow \dddot \ddddot
        \lvert \rvert \lVert \rVert \dotsc \dotsb \dotsm \dotsi \dotso \varGamma \varDelta \varTheta
        \varLambda \varXi \varPi \varSigma \varUpsilon \varPhi \varPsi \varOmega
    """),
    ("amsmath", "both", r"""
        \text
    """),
    ("latexsym", "math", r"""
        \Box \Diamond \Join \leadsto \sqsubset \sqsupset \lhd \rhd \unlhd \unrhd
    """),
    ("textcomp", "text", r"""
        \textdegree \texteuro \textcelsius \textmu \textohm \textcent \textyen \textonehalf
        \textonequarter \textthreequarters \textperthousand \textmusicalnote \textborn \textdied
        \textmarried \textdivorced \textleaf \textestimated \textnumero \textrecipe \textservicemark
        \textlbrackdbl \textrbrackdbl \textinterrobang \textpilcrow \textopenbullet \textreferencemark
        \textdiscount \textcolonmonetary \textwon \textnaira \textpeso \textlira \textdong \textbaht
    """),
    ("mathrsfs", "math", r"\mathscr"),
    ("dsfont", "math", r"\mathds"),
    ("bbm", "math", r"\mathbbm"),
    ("bm", "math", r"\bm"),
    ("upgreek", "math", r"""
        \upalpha \upbeta \upgamma \updelta \upepsilon \upvarepsilon \upzeta \upeta \uptheta \upvartheta
        \upiota \upkappa \uplambda \upmu \upnu \upxi \uppi \upvarpi \uprho \upvarrho \upsigma
        \upvarsigma \uptau \upupsilon \upphi \upvarphi \upchi \uppsi \upomega \Upgamma \Updelta
        \Uptheta \Uplambda \Upxi \Uppi \Upsigma \Upupsilon \Upphi \Uppsi \Upomega
    """),
    ("mathtools", "math", r"""
        \coloneqq \Coloneqq \eqqcolon \Eqqcolon \coloneq \eqcolon \dblcolon \vcentcolon \xmapsto
        \xhookrightarrow \xhookleftarrow \xLeftrightarrow \xleftrightarrow \xRightarrow \xLeftarrow
    """),
    ("stmaryrd", "math", r"""
        \llbracket \rrbracket \llparenthesis \rrparenthesis \lightning \mapsfrom \Mapsto \Mapsfrom
        \shortrightarrow \shortleftarrow \fatsemi \oblong \owedge \ovee \sslash \bbslash \boxslash
        \boxbslash \obslash \merge \interleave \varcurlyvee \varcurlywedge
    """),
    ("esint", "math", r"""
        \oiint \oiiint \varoint \ointclockwise \ointctrclockwise \varointclockwise \varointctrclockwise
        \fint \sqint \sqiint \landupint \landdownint
    """),
    ("gensymb", "both", r"\degree \celsius \ohm \micro \perthousand"),
    ("eurosym", "both", r"\euro \EUR"),
    ("wasysym", "both", r"""
        \smiley \frownie \blacksmiley \sun \female \male \checked \phone \diameter \invdiameter \clock
        \bell \recorder \permil \Square \XBox \CheckedBox \leftmoon \rightmoon \fullmoon \newmoon
        \mercury \venus \earth \mars \jupiter \saturn \uranus \neptune \pluto \aries \taurus \gemini
        \cancer \leo \virgo \libra \scorpio \sagittarius \capricornus \aquarius \pisces \eighthnote
        \quarternote \halfnote \fullnote \twonotes
    """),
    ("marvosym", "text", r"""
        \Lightning \Letter \Mobilefone \Pointinghand \Cross \Bicycle \Mundus \Info \Biohazard
        \Radioactivity \Yinyang \Smiley \Frowny \Writinghand \Telefon \Email \Ecommerce \Euro
    """),
    ("pifont", "text", r"\ding"),
    ("fontenc", "text", r"\dh \DH \th \TH \dj \DJ \ng \NG \guillemotleft \guillemotright \textquotedbl"),
)

_NOTES: dict[str, str] = {
    "\\gt": "MathJax and KaTeX only: in LaTeX type >",
    "\\lt": "MathJax and KaTeX only: in LaTeX type <",
    "\\dh": "with \\usepackage[T1]{fontenc}", "\\DH": "with \\usepackage[T1]{fontenc}",
    "\\th": "with \\usepackage[T1]{fontenc}", "\\TH": "with \\usepackage[T1]{fontenc}",
    "\\dj": "with \\usepackage[T1]{fontenc}", "\\DJ": "with \\usepackage[T1]{fontenc}",
    "\\ng": "with \\usepackage[T1]{fontenc}", "\\NG": "with \\usepackage[T1]{fontenc}",
    "\\guillemotleft": "with \\usepackage[T1]{fontenc}", "\\guillemotright": "with \\usepackage[T1]{fontenc}",
    "\\textquotedbl": "with \\usepackage[T1]{fontenc}",
}  # fmt: skip


def _build_table() -> dict[str, SymbolInfo]:
    table: dict[str, SymbolInfo] = {}
    for package, mode, names in _GROUPS:
        for name in names.split():
            if name in table:  # a name in two groups would be a silent contradiction
                raise ValueError(f"{name} is in the symbol table twice")
            table[name] = SymbolInfo(package, mode, True, _NOTES.get(name))
    for name in ("\\gt", "\\lt"):
        table[name] = SymbolInfo(None, "math", True, _NOTES[name])
    return table


#: Every command :func:`symbol_info` knows, to its :class:`SymbolInfo`.
SYMBOL_INFO: dict[str, SymbolInfo] = _build_table()

_DEFAULT = SymbolInfo(None, "math", False)
_COMMAND = re.compile(r"\\(?:[A-Za-z]+|.)")
_MATH_ONLY_ASCII = frozenset("<>|")
_SPECIAL_ASCII = frozenset("\\{}$&#^_%~")  # TeX's special characters: not symbols as typed


def symbol_info(label: str) -> SymbolInfo:
    """The package ``label`` needs and the mode it works in (see the module docstring).

    ``\\mathbb{R}`` and ``\\mathbb R`` are looked up as ``\\mathbb``; unknown
    labels get math mode, no package and ``known=False``.

    Raises:
        TypeError: when ``label`` is not a str.
    """
    if not isinstance(label, str):
        raise TypeError(f"label must be a str, got {type(label).__name__}")
    info = SYMBOL_INFO.get(label)
    if info is not None:
        return info
    if label.startswith("\\"):
        m = _COMMAND.match(label)
        if m and m.end() < len(label) and m.group() in SYMBOL_INFO:  # a command with its argument
            return SYMBOL_INFO[m.group()]
        return _DEFAULT
    if label.isascii() and label.isprintable() and label.strip() == label and label:
        if any(c in _SPECIAL_ASCII for c in label):
            return _DEFAULT
        if any(c in _MATH_ONLY_ASCII for c in label):
            return SymbolInfo(None, "math", True)
        return SymbolInfo(None, "both", True)
    return _DEFAULT
