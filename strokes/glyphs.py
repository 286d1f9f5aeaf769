"""Unicode previews of LaTeX symbol names, for the drawing page.

:func:`glyph` maps a label (``"\\alpha"``) to the character it typesets as
(``"α"``), or ``None`` when there is no single-glyph equivalent. Plain ASCII
labels (``"x"``, ``"+"``) are their own glyph.
"""

from __future__ import annotations

__all__ = ["glyph", "GLYPHS"]

GLYPHS: dict[str, str] = {
    # Greek
    "\\alpha": "α", "\\beta": "β", "\\gamma": "γ", "\\delta": "δ", "\\epsilon": "ϵ", "\\varepsilon": "ε",
    "\\zeta": "ζ", "\\eta": "η", "\\theta": "θ", "\\vartheta": "ϑ", "\\iota": "ι", "\\kappa": "κ",
    "\\lambda": "λ", "\\mu": "μ", "\\nu": "ν", "\\xi": "ξ", "\\pi": "π", "\\varpi": "ϖ", "\\rho": "ρ",
    "\\varrho": "ϱ", "\\sigma": "σ", "\\varsigma": "ς", "\\tau": "τ", "\\upsilon": "υ", "\\phi": "ϕ",
    "\\varphi": "φ", "\\chi": "χ", "\\psi": "ψ", "\\omega": "ω",
    "\\Gamma": "Γ", "\\Delta": "Δ", "\\Theta": "Θ", "\\Lambda": "Λ", "\\Xi": "Ξ", "\\Pi": "Π",
    "\\Sigma": "Σ", "\\Upsilon": "Υ", "\\Phi": "Φ", "\\Psi": "Ψ", "\\Omega": "Ω",
    # operators and relations
    "\\pm": "±", "\\mp": "∓", "\\times": "×", "\\div": "÷", "\\cdot": "⋅", "\\ast": "∗", "\\star": "⋆",
    "\\circ": "∘", "\\bullet": "∙", "\\leq": "≤", "\\geq": "≥", "\\neq": "≠", "\\lt": "<", "\\gt": ">",
    "\\approx": "≈", "\\equiv": "≡", "\\sim": "∼", "\\simeq": "≃", "\\cong": "≅", "\\propto": "∝",
    "\\ll": "≪", "\\gg": "≫", "\\in": "∈", "\\notin": "∉", "\\ni": "∋", "\\subset": "⊂", "\\supset": "⊃",
    "\\subseteq": "⊆", "\\supseteq": "⊇", "\\cup": "∪", "\\cap": "∩", "\\setminus": "∖", "\\emptyset": "∅",
    "\\varnothing": "∅", "\\forall": "∀", "\\exists": "∃", "\\nexists": "∄", "\\neg": "¬", "\\wedge": "∧",
    "\\vee": "∨", "\\oplus": "⊕", "\\otimes": "⊗", "\\perp": "⊥", "\\parallel": "∥", "\\mid": "∣",
    "\\angle": "∠", "\\nabla": "∇", "\\partial": "∂", "\\infty": "∞", "\\prime": "′", "\\hbar": "ℏ",
    "\\ell": "ℓ", "\\Re": "ℜ", "\\Im": "ℑ", "\\aleph": "ℵ", "\\wp": "℘",
    # big operators and roots
    "\\sum": "∑", "\\prod": "∏", "\\coprod": "∐", "\\int": "∫", "\\iint": "∬", "\\oint": "∮", "\\sqrt": "√",
    # arrows
    "\\rightarrow": "→", "\\to": "→", "\\leftarrow": "←", "\\gets": "←", "\\leftrightarrow": "↔",
    "\\Rightarrow": "⇒", "\\Leftarrow": "⇐", "\\Leftrightarrow": "⇔", "\\uparrow": "↑", "\\downarrow": "↓",
    "\\mapsto": "↦", "\\implies": "⟹", "\\iff": "⟺",
    # delimiters and dots
    "\\{": "{", "\\}": "}", "\\langle": "⟨", "\\rangle": "⟩", "\\lfloor": "⌊", "\\rfloor": "⌋",
    "\\lceil": "⌈", "\\rceil": "⌉", "\\|": "‖", "\\ldots": "…", "\\cdots": "⋯", "\\vdots": "⋮",
    "\\ddots": "⋱",
    # function names typeset as words
    "\\sin": "sin", "\\cos": "cos", "\\tan": "tan", "\\log": "log", "\\ln": "ln", "\\lim": "lim",
    "\\exp": "exp", "\\max": "max", "\\min": "min",
}


def glyph(label: str) -> str | None:
    """The Unicode preview of ``label``, or ``None`` when there is none."""
    if not isinstance(label, str):
        raise TypeError(f"label must be a str, got {type(label).__name__}")
    if label in GLYPHS:
        return GLYPHS[label]
    if label and not label.startswith("\\") and len(label) <= 3 and label.isprintable():
        return label
    return None
