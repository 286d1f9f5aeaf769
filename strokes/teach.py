"""Teach the recognizer new symbols, or your own way of drawing known ones, without retraining.

::

    strokes.teach("\\\\heartsuit", [ink1, ink2, ink3])              # stored in ~/.strokes/user_symbols.sqlite
    strokes.recognize(ink, user_symbols="~/.strokes/user_symbols.sqlite")

:func:`teach` only validates and stores the drawings (see
:mod:`strokes.io.user_symbols` for the stores, their table and limits). The
model is used when recognizing: nothing is retrained, the shipped weights are
never changed, and no training data is needed.

How taught symbols are scored
-----------------------------

The *embedding* of a drawing is the input ``f`` of the model's final linear
layer (for the default ``vgg_gap``: the globally pooled CNN features, 256
numbers). The built-in logits are ``W f + b``. Three numbers per model make
taught symbols commensurable with them; they come from the model and from
synthetic ink (:mod:`strokes.synthetic`, generated, never real data), computed
once per model (about 0.4 s) and cached:

* ``mean``: the mean embedding of synthetic symbols. Embeddings after a ReLU
  are all positive, so raw cosines between any two drawings are high (0.4 for
  different classes); centred on ``mean`` they spread around 0.
* ``target`` (T): the median top built-in logit on synthetic symbols, what a
  confidently recognized symbol scores under this model.
* ``background`` (B0): the median built-in logit at ``mean``, what a class
  scores on a drawing that is not it.

For each taught label, from its stored drawings ``f_1..f_n`` (z_i the unit
vector of ``f_i - mean``): the prototype ``p = unit(sum z_i)``, and the label's
own *leave-one-out* similarity ``s``: the median over its drawings of the
similarity of drawing i to the prototype of the others (with ``n = 1`` a
prior, ``PRIOR_SIMILARITY``; small ``n`` are shrunk towards it). The
per-class calibration maps similarity 0 to B0 and the label's own typical
similarity ``s`` to T, so a label whose drawings vary a lot gets a wider
acceptance than a label drawn the same way every time:

``imprint``
    weight imprinting: a new row of the classifier,
    ``w = a p``, ``b = B0 - a (p . mean)`` with ``a = (T - B0) / s``, where ``s`` is
    the leave-one-out *projection* ``(f_i - mean) . p_-i``. Logits stay linear in
    ``f``, like the built-in ones.
``prototype`` (the default)
    class prototypes with cosine similarity:
    ``logit = B0 + (T - B0) cos(f - mean, p) / s``, ``s`` the leave-one-out cosine.

**The cap.** Reference drawings of the built-in classes (``Calibration.negatives``,
with their top built-in logits) guard those classes: each taught row is lowered, per
label, just enough that it does not score higher on them than their own top built-in
class (``NEGATIVE_MARGIN`` below that, 0 by default). A label's own reference drawings
don't count (teaching a known label keeps its reach). Without it, a taught look-alike of
a built-in class (``z`` of ``2``) takes that class's drawings wholesale. The references
are, when the checkpoint has them, its ``teach_references``: embeddings of real drawings
the model did not train on (its validation writers', up to ``REFERENCES_PER_CLASS``
per class; :func:`add_teach_references`, done by ``benchmarks/ship_model.py`` for the
default model), of which a taught row may take at most ``1 - REFERENCE_QUANTILE`` (0.5 %).
Otherwise they are the synthetic drawings of classes the model knows, and the row must
leave every one of them alone.

Softmax runs over built-in and taught logits together. A taught label the
model already knows keeps its built-in row and gains the user's row; its
probability is the sum of both (so it adapts to the user's style without
forgetting the usual one). Other labels follow the usual softmax.

Measured (``python -m strokes.teach --data ../shared/data/crohme --held-out``, see
:func:`compare`; 10 classes hidden from the classifier and taught under fresh labels
from 1-10 drawings of other writers, 10 repetitions): on the shipped model's held-out
CROHME test writers, imprinting names taught symbols 86 / 92 / 94 / 93 % of the time
(1 / 3 / 5 / 10 drawings) while built-in top-1 goes from 93.4-93.9 % to 92.1-92.7 %
(before the cap: 86 / 95 / 94 / 95 % at 91.3-92.5 %); class prototypes are within a
point of it everywhere. A single global offset on raw imprinted rows trades one against
the other (for 5 drawings: 93.5 % taught at 92.0 % built-in, or 97.6 % at 88.2 %, or
98.3 % at 31 %); centring the embedding does most of the per-class work, and the
per-class calibration places the operating point from the model's own logit statistics
instead of a tuned offset. Against the synthetic cap, imprinting was as good or slightly
better; against a checkpoint's reference drawings (below), prototypes name the held-out
symbols as often at a smaller cost to the built-in classes, so they are the default. Teaching 5 rotated drawings of a known class lifts rotated
drawings of it from ~50 % to ~87 %, at about 2 points on unrotated drawings.

The harder test, classes the model *never* saw in training (``benchmarks/bench_teach.py``,
20 CROHME classes left out of training, see ``benchmarks/RESULTS.md``): with reference
drawings and prototypes, about 75 % top-1 and 97 % top-5 on them from 5 drawings each, at a
cost of about 4 points on the built-in classes (the synthetic cap: 7 points for the same
taught accuracy; 12 without a cap), mostly look-alikes such as ``z`` taught next to a
built-in ``2``. Holding the built-in classes within 0.5 point leaves about 43 % (prototypes)
to 60 % (rows fitted discriminatively) of the held-out drawings named from 5 drawings each,
and about 75 % only from every one of the val writers' drawings (about a hundred per class).
Other embeddings (a cosine classifier, no label smoothing, the sequence model's) move those
figures by a few points, none of them near 75 %.

Caching: per model and store, the embeddings of stored drawings are computed
once; a recognize() call asks the store for ``(row count, largest id)`` (one
small query; a PostgreSQL store reuses the answer for up to
``strokes.io.user_symbols.STATE_TTL_S``, and sees its own process's teach at
once) and rebuilds the taught rows only when that changed, embedding only the
new drawings. With 100 taught symbols recognize() costs about 0.3 ms more than
without; a teach call takes 2-5 ms (one committed transaction; benchmarks/bench_teach.py).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .io.user_symbols import (
    MAX_INKS_PER_CALL,
    MAX_LABEL_CHARS,
    MAX_POINTS_PER_INK,
    UserSymbolStore,
    check_inks,
    check_label,
    ink_json,
    label_to_store_key,
    open_store,
)

log = logging.getLogger(__name__)

__all__ = [
    "teach",
    "TeachResult",
    "taught_head",
    "TaughtHead",
    "Calibration",
    "calibrate",
    "model_calibration",
    "reference_features",
    "add_teach_references",
    "REFERENCE_QUANTILE",
    "build_head",
    "compare",
    "METHODS",
    "DEFAULT_METHOD",
    "MAX_LABEL_CHARS",
    "MAX_INKS_PER_CALL",
    "MAX_POINTS_PER_INK",
]

#: How taught symbols are scored (see the module docstring).
METHODS = ("imprint", "prototype")
#: How recognize() scores taught symbols. With a checkpoint's teach_references, class prototypes
#: named held-out CROHME symbols as often as imprinting did, at a smaller cost to the built-in
#: classes (benchmarks/bench_teach.py).
DEFAULT_METHOD = "prototype"
#: Prior leave-one-out cosine of a drawing to the other drawings of its label (the median
#: between same-class CROHME drawings in the default model's centred embedding is about 0.85).
PRIOR_SIMILARITY = 0.8
#: Weight of that prior, in drawings: s = (PRIOR_WEIGHT * prior + (n - 1) * measured) / (PRIOR_WEIGHT + n - 1).
PRIOR_WEIGHT = 2.0
#: The similarity ``s`` is kept at least this fraction of the prior (drawings that disagree
#: wildly must not give a label an enormous slope).
MIN_SIMILARITY_FRACTION = 0.25
#: Synthetic writers (one sample of each synthetic symbol each) used to calibrate a model.
CALIBRATION_WRITERS = 4
#: How far below the reference drawing's own top built-in logit a taught row's logit is held on
#: every reference drawing of a built-in class (0: at most equal; see the module docstring).
NEGATIVE_MARGIN = 0.0
#: With real reference drawings (a checkpoint's ``teach_references``): the share of them a taught
#: row must leave to their own top class. 1.0 would be every one of them (the rule for the few
#: synthetic drawings); 0.995 lets a taught row take at most 0.5 % of them, which measured on
#: 20 CROHME classes left out of training (benchmarks/bench_teach.py) halves the built-in cost
#: of the synthetic cap at about the same taught-symbol accuracy.
REFERENCE_QUANTILE = 0.995
#: Reference drawings kept per built-in class by :func:`add_teach_references` (a seeded sample).
REFERENCES_PER_CLASS = 100


# ------------------------------------------------------------------------------------ teaching
@dataclass(frozen=True)
class TeachResult:
    """What :func:`teach` stored."""

    label: str  #: the label, as given
    key: str  #: the ``key`` column it was stored under (the label, or ``latex2e-OT1-LABEL``)
    ids: tuple[int, ...]  #: the new rows' ids, in the order of the drawings
    total: int  #: drawings of this label in the store now, these included
    store: str  #: where (a path, or a DSN without its password)

    @property
    def count(self) -> int:
        """How many drawings this call stored."""
        return len(self.ids)


def teach(label: str, inks: Sequence, user_symbols=None) -> TeachResult:
    """Store drawings of ``label`` so that recognize(..., user_symbols=...) knows it.

    Args:
        label: the symbol, as it should be returned (``"\\\\heartsuit"``): not blank,
            at most ``MAX_LABEL_CHARS`` (64) characters, no control characters, no
            white space at either end. A label the model already knows adapts it to
            these drawings.
        inks: a list of 1 to ``MAX_INKS_PER_CALL`` (50) drawings, each in any shape
            :func:`strokes.as_ink` accepts, of at most ``MAX_POINTS_PER_INK`` (10,000)
            points. (The limits are constants of ``strokes.io.user_symbols``.)
        user_symbols: where to store: a SQLite path (created when missing), a
            ``postgresql://`` DSN, a store object (``strokes.io.user_symbols.UserSymbolStore``),
            or None for the default, ``$STROKES_USER_SYMBOLS`` or ``~/.strokes/user_symbols.sqlite``.

    Returns:
        A :class:`strokes.TeachResult` (the label, the new ids, the label's total).

    Raises:
        ValueError, TypeError: for a bad label or a bad drawing (naming which), or a
            store that is not one; nothing is stored then. All drawings of a call are
            stored in one transaction, or none.
        ConnectionError: when the store cannot be reached or stays locked.
    """
    t0 = time.perf_counter()
    label = check_label(label)
    checked = check_inks(inks)
    rows = [ink_json(ink) for ink in checked]
    store = open_store(user_symbols)
    key = label_to_store_key(label)
    ids, total = store.add(key, rows)
    log.info("taught %r: %d drawing(s) into %s in %.1f ms", label, len(ids), store.location, 1e3 * (time.perf_counter() - t0))
    return TeachResult(label=label, key=key, ids=tuple(ids), total=total, store=store.location)


# ------------------------------------------------------------------------------------ the method
@dataclass(frozen=True)
class Calibration:
    """What puts taught scores on the scale of a model's built-in logits (see the module docstring)."""

    mean: np.ndarray  #: (D,) the mean embedding of synthetic symbols
    target: float  #: T, the median top built-in logit on them
    background: float  #: B0, the median built-in logit at ``mean``
    negatives: np.ndarray | None = None  #: (M, D) embeddings of the reference drawings of built-in classes, or None
    negative_top: np.ndarray | None = None  #: (M,) the top built-in logit of each of them
    negative_labels: tuple = ()  #: (M,) the built-in class of each of them
    quantile: float = 1.0  #: the share of the negatives on which a taught row must not beat their top class
    source: str = "synthetic"  #: the negatives' origin, ``"synthetic"`` ink or the checkpoint's ``"references"``


def calibrate(feats: np.ndarray, W: np.ndarray, b: np.ndarray, labels=None) -> Calibration:
    """A :class:`Calibration` from reference embeddings ``feats`` (N, D) and the classifier ``W`` (K, D), ``b`` (K,).

    ``labels``: optional, one per reference drawing, its built-in class name, or None for a
    drawing of no built-in class. The drawings of built-in classes become the negatives
    that cap each taught row (see the module docstring); without labels nothing is capped.
    """
    feats = np.asarray(feats, np.float64)
    W, b = np.asarray(W, np.float64), np.asarray(b, np.float64)
    mean = feats.mean(0)
    logits = feats @ W.T + b  # (N, K)
    target = float(np.median(logits.max(1)))
    background = float(np.median(mean @ W.T + b))
    if not target > background + 0.5:
        log.warning("calibration: top logit %.2f hardly above the background %.2f; taught symbols will score weakly", target, background)
        target = background + 1.0
    if labels is None:
        return Calibration(mean=mean, target=target, background=background)
    if len(labels) != len(feats):
        raise ValueError(f"labels must name one class (or None) per reference drawing: {len(labels)} for {len(feats)} drawings")
    keep = np.array([lab is not None for lab in labels], dtype=bool)
    return Calibration(
        mean=mean, target=target, background=background, negatives=feats[keep], negative_top=logits.max(1)[keep],
        negative_labels=tuple(str(lab) for lab in labels if lab is not None),
    )  # fmt: skip


def model_calibration(rec, references: bool = True) -> Calibration:
    """The cached :class:`Calibration` of a :class:`strokes.recognizer.Recognizer`.

    ``mean``, T and B0 come from synthetic ink (computed once). The negatives that cap taught
    rows are the checkpoint's ``teach_references`` when it has them (real drawings of the
    built-in classes, capped at :data:`REFERENCE_QUANTILE`), else the synthetic drawings of
    classes the model knows (capped on all of them). ``references=False`` ignores the
    checkpoint's references (for comparisons).
    """
    cache = "_teach_calibration" if references else "_teach_calibration_synthetic"
    cal = getattr(rec, cache, None)
    if cal is None:
        from .synthetic import generate

        syn = generate(n_writers=CALIBRATION_WRITERS, samples_per_writer=1, seed=0)
        _, feats = rec.logits_and_features([syn[i].strokes for i in range(len(syn))])
        W, b = classifier_weights(rec)
        cal = calibrate(feats, W, b, synthetic_labels(syn, rec.classes))
        refs = rec.loaded.checkpoint.get("teach_references") if references else None
        if refs is not None and len(refs["labels"]):
            vocab = rec.classes
            cal = Calibration(
                mean=cal.mean, target=cal.target, background=cal.background,
                negatives=refs["features"].double().numpy(), negative_top=refs["top"].double().numpy(),
                negative_labels=tuple(vocab[int(i)] for i in refs["labels"]), quantile=REFERENCE_QUANTILE,
                source="references",
            )  # fmt: skip
        setattr(rec, cache, cal)
        log.info(
            "calibrated %s for taught symbols: T=%.2f, B0=%.2f, %d %s negatives",
            rec.loaded.name, cal.target, cal.background, 0 if cal.negatives is None else len(cal.negatives), cal.source,
        )  # fmt: skip
    return cal


def reference_features(rec, inks: Sequence, labels: Sequence[str], per_class: int | None = REFERENCES_PER_CLASS, seed: int = 0) -> dict:
    """The ``teach_references`` section for ``rec``'s checkpoint from drawings of its built-in classes.

    ``inks`` should be drawings the model did not train on (its validation writers'), ``labels``
    their class names (each in the model's vocabulary). At most ``per_class`` drawings per class
    are kept (a sample seeded by ``seed``; None keeps all). Returns tensors ``features`` (M, D)
    float16, ``top`` (M,) float32 (the top built-in logit of each) and ``labels`` (M,) int64.
    """
    import torch

    vocab = {c: i for i, c in enumerate(rec.classes)}
    labels = [str(x) for x in labels]
    if len(labels) != len(inks):
        raise ValueError(f"reference_features needs one label per ink: {len(labels)} labels for {len(inks)} inks")
    unknown = sorted(set(labels) - vocab.keys())
    if unknown:
        raise ValueError(f"reference drawings must be of the model's built-in classes; {unknown[:5]} are not among its {len(vocab)}")
    y = np.array([vocab[x] for x in labels], dtype=np.int64)
    keep = np.arange(len(y))
    if per_class is not None:
        if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
            raise ValueError(f"per_class must be a positive int or None, got {per_class!r}")
        rng = np.random.default_rng(seed)
        keep = np.sort(np.concatenate([
            rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)
        ])) if len(y) else keep  # fmt: skip
    feats, tops = [], []
    for a in range(0, len(keep), 512):
        logits, f = rec.logits_and_features([inks[int(i)] for i in keep[a : a + 512]])
        feats.append(f)
        tops.append(logits.max(1))
    dim = rec.classifier.in_features if rec.classifier is not None else 0
    return {
        "features": torch.from_numpy(np.concatenate(feats) if feats else np.zeros((0, dim), np.float32)).half(),
        "top": torch.from_numpy(np.concatenate(tops) if tops else np.zeros(0, np.float32)).float(),
        "labels": torch.from_numpy(y[keep]),
    }


def add_teach_references(checkpoint, inks: Sequence, labels: Sequence[str], out=None, per_class: int | None = REFERENCES_PER_CLASS, seed: int = 0):
    """Write ``checkpoint`` (a path) again, to ``out`` (default: in place, atomically), with a
    ``teach_references`` section computed from ``inks`` and ``labels`` (see :func:`reference_features`).

    The weights and every other section are kept as they are. Returns the path written.
    """
    from pathlib import Path

    from .recognizer import Recognizer
    from .training.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint

    path = Path(checkpoint)
    ckpt = read_checkpoint(path)
    rec = Recognizer(load_checkpoint(ckpt))
    ckpt["teach_references"] = reference_features(rec, inks, labels, per_class=per_class, seed=seed)
    return save_checkpoint(ckpt, path if out is None else out)


def synthetic_labels(syn, vocab) -> list:
    """The class of each synthetic drawing in ``vocab`` (None where ``vocab`` lacks it); synthetic
    names such as ``<`` are also matched to CROHME's ``\\lt``."""
    known = set(vocab)
    alias = {"<": "\\lt", ">": "\\gt"}
    out = []
    for c in syn.labels:
        name = syn.vocab[c]
        name = name if name in known else alias.get(name)
        out.append(name if name in known else None)
    return out


def classifier_weights(rec) -> tuple[np.ndarray, np.ndarray]:
    """``(W, b)`` of the recognizer's final linear layer, as float64 numpy."""
    lin = rec.classifier
    if lin is None:
        raise ValueError(f"{rec.loaded.name} has no final linear classifier layer; taught symbols need one")
    weight = lin.effective_weight() if hasattr(lin, "effective_weight") else lin.weight  # a cosine classifier's scaled unit rows
    W = weight.detach().cpu().double().numpy()
    b = lin.bias.detach().cpu().double().numpy() if lin.bias is not None else np.zeros(W.shape[0])
    return W, b


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 1e-12)


def _group_median(values: np.ndarray, groups: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Median of ``values`` per group (groups 0..G-1 with ``counts``), vectorized; NaN for empty groups."""
    order = np.lexsort((values, groups))
    v = values[order]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    c = np.maximum(counts, 1)
    lo = np.minimum(starts + (c - 1) // 2, max(len(v) - 1, 0))
    hi = np.minimum(starts + c // 2, max(len(v) - 1, 0))
    out = 0.5 * (v[lo] + v[hi]) if len(v) else np.zeros(len(counts))
    return np.where(counts > 0, out, np.nan)


class TaughtHead:
    """Built-in classes plus taught labels, scored together.

    ``labels``: the built-in vocabulary, then the new labels (sorted).
    :meth:`probabilities` turns the model's logits and embeddings into
    ``(N, len(labels))`` probabilities.
    """

    def __init__(self, vocab, labels, rows: np.ndarray, weights, bias=None, method: str = "imprint", mean=None, scale=None, background=None, cap=None):
        self.vocab = list(vocab)  #: the built-in classes, in the model's order
        self.labels = np.array(list(labels), dtype=object)  #: the output labels, ``vocab`` then the new ones
        self.method = method
        self.rows = rows  #: (R,) output index of each taught row
        self.weights = weights  #: (R, D) imprinted rows (imprint) or unit prototypes (prototype)
        self.bias = bias  #: (R,) biases of the imprinted rows (imprint)
        self.mean, self.scale, self.background = mean, scale, background  # prototype only
        self.cap = np.zeros(len(rows), np.float32) if cap is None else np.asarray(cap, np.float32)  #: (R,) lowered by, per row

    def taught_logits(self, feats: np.ndarray) -> np.ndarray:
        """(N, R) logits of the taught rows for embeddings ``feats`` (N, D)."""
        f = np.asarray(feats, np.float32)
        if self.method == "imprint":
            return f @ self.weights.T + (self.bias - self.cap)
        z = _unit(f - self.mean)
        return self.background - self.cap + self.scale * (z @ self.weights.T)

    def probabilities(self, logits: np.ndarray, feats: np.ndarray) -> np.ndarray:
        """(N, len(labels)) float32: softmax over built-in and taught logits, summed per label."""
        z = np.concatenate([np.asarray(logits, np.float32), self.taught_logits(feats).astype(np.float32)], axis=1)
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        k = len(self.vocab)
        out = np.zeros((len(z), len(self.labels)), np.float32)
        out[:, :k] = z[:, :k]
        out[:, self.rows] += z[:, k:]  # one taught row per label: the indices are distinct
        return out


def build_head(vocab, feats: np.ndarray, labels: Sequence[str], cal: Calibration, method: str = DEFAULT_METHOD) -> TaughtHead:
    """The :class:`TaughtHead` for taught drawings with embeddings ``feats`` (n, D) and ``labels`` (n,).

    Vectorized over drawings and labels (no loop per drawing or label).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    vocab = list(vocab)
    names, idx = np.unique(np.asarray(labels, dtype=object).astype(str), return_inverse=True) if len(labels) else (np.array([], str), np.zeros(0, int))
    L = len(names)
    feats = np.asarray(feats, np.float64)
    centred = feats - cal.mean  # (n, D)
    z = _unit(centred)
    onehot = np.zeros((L, len(z)))
    onehot[idx, np.arange(len(z))] = 1.0
    sums = onehot @ z  # (L, D)
    counts = np.bincount(idx, minlength=L)
    protos = _unit(sums)  # (L, D)
    others = _unit(sums[idx] - z)  # (n, D): the prototype of the label's other drawings (0 when alone)
    if method == "imprint":
        own = (centred * others).sum(1)  # leave-one-out projection
        prior = PRIOR_SIMILARITY * _group_median(np.linalg.norm(centred, axis=1), idx, counts)
    else:
        own = (z * others).sum(1)  # leave-one-out cosine
        prior = np.full(L, PRIOR_SIMILARITY)
    measured = np.nan_to_num(_group_median(own, idx, counts))
    n1 = np.maximum(counts - 1, 0)
    s = (PRIOR_WEIGHT * prior + n1 * measured) / (PRIOR_WEIGHT + n1)
    s = np.maximum(s, MIN_SIMILARITY_FRACTION * prior)
    slope = (cal.target - cal.background) / s  # (L,)
    lookup = {c: i for i, c in enumerate(vocab)}
    new = sorted(set(names) - lookup.keys())
    lookup.update({c: len(vocab) + i for i, c in enumerate(new)})
    rows = np.array([lookup[c] for c in names], dtype=np.int64)
    if method == "imprint":
        W = (slope[:, None] * protos).astype(np.float32)
        b = (cal.background - slope * (protos @ cal.mean)).astype(np.float32)
        head = TaughtHead(vocab, vocab + new, rows, W, b, method)
    else:
        head = TaughtHead(
            vocab, vocab + new, rows, protos.astype(np.float32), None, method,
            mean=cal.mean.astype(np.float32), scale=slope.astype(np.float32), background=np.float32(cal.background),
        )  # fmt: skip
    if cal.negatives is not None and len(cal.negatives):
        # the cap: no reference drawing of a built-in class may be taken from its class by a taught row
        excess = head.taught_logits(cal.negatives).astype(np.float64) - cal.negative_top[:, None] + NEGATIVE_MARGIN  # (M, L)
        excess[np.asarray(cal.negative_labels, dtype=object)[:, None] == names[None, :].astype(object)] = -np.inf  # a label's own drawings
        worst = excess.max(0) if cal.quantile >= 1 else np.quantile(excess, cal.quantile, axis=0, method="higher")  # (L,)
        head.cap = np.maximum(np.nan_to_num(worst, nan=0.0, neginf=0.0), 0.0).astype(np.float32)
    return head


# ------------------------------------------------------------------------------------ caching
class _StoreCache:
    """Embeddings of one store's drawings under one model, and the heads built from them."""

    def __init__(self):
        self.lock = threading.Lock()  # held while reading the store and building heads
        self.state = None  # (count, max id) of what is loaded
        self.ids = np.zeros(0, np.int64)
        self.labels: list[str] = []
        self.feats = None
        self.skipped = 0
        #: (state, {method: head}), replaced as a whole so that readers without the lock see a
        #: state and the heads built for it, never a mix
        self.current: tuple = (None, {})

    def _parse(self, rows) -> tuple[list[int], list[str], list]:
        from .ink import DEFAULT_MAX_POINTS, as_ink
        from .io.detexify import key_to_label

        ids, labels, inks = [], [], []
        for rid, key, raw in rows:
            try:
                try:
                    data = json.loads(raw)
                except ValueError as exc:
                    raise ValueError(f"strokes is not valid JSON ({exc})") from None
                ink = as_ink(data, max_points=DEFAULT_MAX_POINTS)
                label = key_to_label(key or "")
                if not label:
                    raise ValueError("key is empty")
            except (ValueError, TypeError, RecursionError) as exc:
                self.skipped += 1
                log.warning("user symbols: row id %s skipped: %s", rid, exc)
                continue
            ids.append(int(rid))
            labels.append(label)
            inks.append(ink)
        return ids, labels, inks

    def refresh(self, rec, store: UserSymbolStore) -> None:
        """Bring the embeddings up to date with the store (only new rows are embedded)."""
        base = self.state or (0, 0)
        new_rows = store.rows(after_id=base[1])
        after = store.state(fresh=True)
        consistent = after == (base[0] + len(new_rows), max([base[1]] + [r[0] for r in new_rows]))
        if not consistent and self.state is not None:  # rows were removed, or written meanwhile: read all again
            new_rows = store.rows(after_id=0)
            self.ids, self.labels, self.feats, self.skipped = np.zeros(0, np.int64), [], None, 0
        ids, labels, inks = self._parse(new_rows)
        feats = [rec.logits_and_features(inks[a : a + 256])[1] for a in range(0, len(inks), 256)]
        dim = rec.classifier.in_features
        feats = np.concatenate(feats) if feats else np.zeros((0, dim), np.float32)
        self.ids = np.concatenate([self.ids, np.asarray(ids, np.int64)])
        self.labels = self.labels + labels
        self.feats = feats if self.feats is None else np.concatenate([self.feats, feats])
        # the state of what was read (bad rows count: the store's count includes them); when rows
        # were written meanwhile, the next call sees a different state and reads again
        self.state = after if consistent else (len(new_rows), max((r[0] for r in new_rows), default=0))
        self.current = (self.state, {})
        log.info("user symbols %s: %d drawings of %d labels (%d new)", store.location, len(self.ids), len(set(self.labels)), len(ids))


def taught_head(rec, user_symbols, method: str | None = None) -> TaughtHead | None:
    """The :class:`TaughtHead` of ``rec`` (a Recognizer) and a store, or None when it holds nothing.

    Cached per recognizer and store; recomputed when the store's ``(row count,
    largest id)`` changes.
    """
    method = method or DEFAULT_METHOD
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if rec.classifier is None:
        raise ValueError(f"{rec.loaded.name} has no final linear classifier layer, so it cannot rank taught symbols")
    store = open_store(user_symbols)
    key = (type(store).__name__, store.location)
    cache = rec.taught.get(key)
    if cache is None:
        with rec.lock:
            cache = rec.taught.setdefault(key, _StoreCache())
    state = store.state()  # the one query a recognize() call makes when nothing changed
    seen, heads = cache.current
    if seen == state and method in heads:
        return heads[method]
    with cache.lock:
        if cache.state != state:
            cache.refresh(rec, store)
        heads = cache.current[1]
        if method not in heads:
            if cache.feats is None or len(cache.ids) == 0:
                heads[method] = None
            else:
                heads[method] = build_head(rec.classes, cache.feats, cache.labels, model_calibration(rec), method)
        return heads[method]


# ------------------------------------------------------------------------------------ the experiment
def compare(
    data="crohme-mini",
    *,
    model=None,
    shots=(1, 3, 5, 10),
    n_new: int = 10,
    reps: int = 10,
    teach_fraction: float = 0.3,
    min_count: int = 20,
    seed: int = 0,
    offsets=(-6.0, -4.0, -2.0, 0.0, 2.0),
    style_degrees: float = 35.0,
) -> dict:
    """Compare the ways of scoring taught symbols on real data; returns a dict of results.

    Protocol (per repetition, seeded): the writers of ``data`` are split into
    teaching writers (``teach_fraction``) and test writers. ``n_new`` classes
    with at least ``min_count`` samples are made *new*: their built-in rows are
    removed from the classifier (so the model cannot name them), and each is
    taught, under a fresh label, from ``shots`` drawings of teaching writers.
    Measured on the test writers' drawings: **taught top-1** (drawings of the
    new classes given their taught label) and **built-in top-1** (drawings of
    the other classes, compared with the same reduced classifier untaught).

    Methods: ``imprint`` and ``prototype`` (per-class calibration, as shipped);
    and, for contrast, two single-global-offset versions: ``global-raw``
    (imprinting of the raw, uncentred mean embedding with the built-in rows'
    mean norm and bias, plus an offset) and ``global-centred`` (the centred
    prototype with the built-in rows' mean norm, bias B0 plus an offset), each
    at every offset in ``offsets``.

    Adaptation: the test writers' drawings rotated by ``style_degrees`` stand for
    a user with an unusual hand; ``n_new`` known classes are taught (under
    their own labels) from ``shots`` rotated drawings of teaching writers, and
    top-1 on the rotated test drawings of those classes is compared with the
    untaught model (plus top-1 on unrotated drawings, to show what it costs).

    Caveat: the shipped model was trained with these classes (and, for
    crohme-mini, most of its writers), so its embedding separates the "new"
    classes better than it would separate symbols it never saw.
    """
    from .io import load
    from .probes import Probe, apply_probe
    from .recognizer import get_recognizer
    from .synthetic import generate

    rec = get_recognizer(model)
    ds = load(data) if isinstance(data, str) else data
    vocab = rec.classes
    lookup = {c: i for i, c in enumerate(vocab)}
    known = np.array([ds.vocab[c] in lookup for c in range(len(ds.vocab))])
    keep = known[ds.labels]
    if not keep.all():
        log.warning("compare: %d samples of classes the model does not know are left out", int((~keep).sum()))
        ds = ds.subset(np.flatnonzero(keep))

    def embed(d):
        out = [rec.logits_and_features([d[i].strokes for i in range(a, min(a + 512, len(d)))])[1] for a in range(0, len(d), 512)]
        return np.concatenate(out).astype(np.float64)

    t0 = time.perf_counter()
    F = embed(ds)
    F_rot = embed(apply_probe(ds, Probe("style", "rotate", style_degrees)))
    syn = generate(n_writers=CALIBRATION_WRITERS, samples_per_writer=1, seed=0)
    F_syn = embed(syn)
    y_syn = np.array([-1 if n is None else lookup[n] for n in synthetic_labels(syn, vocab)])  # (S,) class, -1: none
    seconds = time.perf_counter() - t0
    W, b = classifier_weights(rec)
    y = np.array([lookup[ds.vocab[c]] for c in ds.labels])
    writers = ds.writer_ids.copy()
    rng = np.random.default_rng(seed)
    results: dict = {"data": getattr(ds, "name", str(data)), "samples": len(ds), "embed_seconds": seconds, "new": {}, "adapt": {}}
    for K in shots:
        trials = [_new_class_trial(F, (F_syn, y_syn), W, b, y, _teaching_writers(writers, rng, teach_fraction), K, n_new, min_count, offsets, rng)
                  for _ in range(reps)]  # fmt: skip
        results["new"][K] = {name: _mean([t[name] for t in trials]) for name in trials[0]}
    for K in shots:
        trials = [_adapt_trial(F, F_rot, (F_syn, y_syn), W, b, y, _teaching_writers(writers, rng, teach_fraction), K, n_new, rng)
                  for _ in range(reps)]  # fmt: skip
        results["adapt"][K] = {name: _mean([t[name] for t in trials]) for name in trials[0]}
    results["protocol"] = dict(n_new=n_new, reps=reps, teach_fraction=teach_fraction, min_count=min_count, seed=seed, style_degrees=style_degrees)
    return results


def _teaching_writers(writers: np.ndarray, rng, fraction: float) -> np.ndarray:
    """(N,) bool: the samples of a random ``fraction`` of the writers (the rest test)."""
    ids = np.unique(writers)
    rng.shuffle(ids)
    return np.isin(writers, ids[: int(round(len(ids) * fraction))])


def _mean(rows: list) -> tuple:
    """The column means of ``rows``, NaN where a column is all NaN (the untaught model's taught top-1)."""
    arr = np.array(rows, dtype=float)
    seen = ~np.isnan(arr)
    total = np.where(seen, arr, 0.0).sum(0)
    return tuple(np.where(seen.any(0), total / np.maximum(seen.sum(0), 1), np.nan).tolist())


def _top1(scores: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    return float((scores.argmax(1) == target)[mask].mean()) if mask.any() else float("nan")


def _syn_names(y_syn: np.ndarray, known: np.ndarray) -> list:
    """Reference labels for :func:`calibrate` in :func:`compare`'s ``c0001`` naming (None: not a class of ``known``)."""
    return [f"c{c:04d}" if c >= 0 and c in known else None for c in y_syn]


def _new_class_trial(F, syn, W, b, y, teach_w, K, n_new, min_count, offsets, rng) -> dict:
    """One repetition of :func:`compare`'s new-class protocol: {method: (taught top-1, built-in top-1)}."""
    F_syn, y_syn = syn
    counts_t, counts_e, counts = (np.bincount(y[m], minlength=len(W)) for m in (teach_w, ~teach_w, np.ones_like(teach_w)))
    classes = np.flatnonzero((counts_t >= K) & (counts_e >= 5) & (counts >= min_count))
    if len(classes) < n_new:
        raise ValueError(f"only {len(classes)} classes have {K} teaching and 5 test drawings; lower n_new")
    new = rng.choice(classes, n_new, replace=False)
    rest = np.setdiff1d(np.arange(len(W)), new)  # the classifier without the new classes
    Wm, bm = W[rest], b[rest]
    cal = calibrate(F_syn, Wm, bm, _syn_names(y_syn, set(rest.tolist())))
    picks = np.concatenate([rng.choice(np.flatnonzero(teach_w & (y == c)), K, replace=False) for c in new])  # (n_new * K,)
    logits = F @ Wm.T + bm  # (N, K - n_new)
    # the column each sample should win: its built-in class, or its new class's taught column
    column = np.full(len(W), -1)
    column[rest] = np.arange(len(rest))
    column[np.sort(new)] = len(rest) + np.arange(n_new)  # build_head appends new labels in sorted order
    target = column[y]
    is_new, test = np.isin(y, new), ~teach_w
    out = {"untaught": (float("nan"), _top1(logits, target, test & ~is_new))}
    names = np.array([f"c{c:04d}" for c in range(len(W))], dtype=object)  # sortable like the class indices
    for method in METHODS:
        head = build_head(names[rest].tolist(), F[picks], names[y[picks]], cal, method)
        scores = head.probabilities(logits, F)
        out[method] = (_top1(scores, target, test & is_new), _top1(scores, target, test & ~is_new))
    order = np.argsort(y[picks], kind="stable")
    taught = F[picks][order].reshape(n_new, K, -1)  # (n_new, K, D), in sorted class order
    norm = np.linalg.norm(Wm, axis=1).mean()
    raw = _unit(taught.mean(1)) * norm  # uncentred imprinting with the built-in rows' mean norm
    centred = _unit(_unit(taught - cal.mean).sum(1)) * norm  # the centred prototype, the same norm
    for kind, extra in (("raw", F @ raw.T + bm.mean()), ("centred", (F - cal.mean) @ centred.T + cal.background)):
        for off in offsets:
            scores = np.concatenate([logits, extra + off], axis=1)
            out[f"global-{kind}{off:+g}"] = (_top1(scores, target, test & is_new), _top1(scores, target, test & ~is_new))
    return out


def _adapt_trial(F, F_rot, syn, W, b, y, teach_w, K, n_new, rng) -> dict:
    """One repetition of the adaptation protocol: {method: (taught rotated, other rotated, all unrotated) top-1}."""
    F_syn, y_syn = syn
    counts_t, counts_e = (np.bincount(y[m], minlength=len(W)) for m in (teach_w, ~teach_w))
    classes = np.flatnonzero((counts_t >= K) & (counts_e >= 5))
    taught = rng.choice(classes, min(n_new, len(classes)), replace=False)
    picks = np.concatenate([rng.choice(np.flatnonzero(teach_w & (y == c)), K, replace=False) for c in taught])
    cal = calibrate(F_syn, W, b, _syn_names(y_syn, set(range(len(W)))))
    vocab = [f"c{c:04d}" for c in range(len(W))]
    test, is_taught = ~teach_w, np.isin(y, taught)
    logits_rot, logits = F_rot @ W.T + b, F @ W.T + b
    out = {"untaught": (_top1(logits_rot, y, test & is_taught), _top1(logits_rot, y, test & ~is_taught), _top1(logits, y, test))}
    for method in METHODS:
        head = build_head(vocab, F_rot[picks], [vocab[c] for c in y[picks]], cal, method)
        rot = head.probabilities(logits_rot, F_rot)
        out[method] = (_top1(rot, y, test & is_taught), _top1(rot, y, test & ~is_taught), _top1(head.probabilities(logits, F), y, test))
    return out


def format_comparison(results: dict) -> str:
    """The results of :func:`compare` as Markdown tables."""
    p = results["protocol"]
    lines = [
        f"### Taught symbols on {results['data']} ({results['samples']} samples; {p['n_new']} classes made new, "
        f"{p['reps']} repetitions, {int(p['teach_fraction'] * 100)}% of writers teach, the rest test)",
        "",
        "| method | " + " | ".join(f"{k} shot{'s' if k > 1 else ''}: taught / built-in top-1" for k in results["new"]) + " |",
        "|---|" + "---|" * len(results["new"]),
    ]
    names = list(next(iter(results["new"].values())))
    for name in names:
        cells = []
        for k, r in results["new"].items():
            t, b = r[name]
            cells.append(f"{'—' if np.isnan(t) else f'{100 * t:.1f}'} / {100 * b:.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"### Adaptation: test drawings rotated {p['style_degrees']:g}°, {p['n_new']} known classes taught from rotated drawings",
        "",
        "| method | " + " | ".join(f"{k} shot{'s' if k > 1 else ''}: taught classes rotated / other classes rotated / all unrotated" for k in results["adapt"]) + " |",
        "|---|" + "---|" * len(results["adapt"]),
    ]
    for name in next(iter(results["adapt"].values())):
        cells = [" / ".join(f"{100 * v:.1f}" for v in r[name]) for r in results["adapt"].values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m strokes.teach", description="Compare the ways of scoring taught symbols (see strokes.teach.compare).")
    ap.add_argument("--data", default="crohme-mini", help="labelled data with writers (default crohme-mini, shipped)")
    ap.add_argument("--model", default=None, help="a checkpoint (default: the shipped model)")
    ap.add_argument("--shots", default="1,3,5,10", help="drawings taught per class (default 1,3,5,10)")
    ap.add_argument("--new", type=int, default=10, help="classes made new per repetition (default 10)")
    ap.add_argument("--reps", type=int, default=10, help="repetitions (default 10)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--held-out", action="store_true", help="only the writer-disjoint test split the model was trained without "
                    "(DATA must be the data it was trained on, e.g. ../shared/data/crohme for the shipped model)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    data = args.data
    if args.held_out:
        from .io import load
        from .recognizer import get_recognizer
        from .training.train import checkpoint_split

        full = load(args.data, progress=False)
        data = full.subset(checkpoint_split(get_recognizer(args.model).loaded.checkpoint, full).test)
        data.name = f"{args.data} (the model's held-out test writers)"
    res = compare(data, model=args.model, shots=tuple(int(s) for s in args.shots.split(",")), n_new=args.new, reps=args.reps, seed=args.seed)
    print(format_comparison(res))
    if args.json:
        from ._util import atomic_write

        with atomic_write(args.json, "w") as fh:
            json.dump({k: ({str(kk): vv for kk, vv in v.items()} if isinstance(v, dict) else v) for k, v in res.items()}, fh, indent=1, default=float)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
