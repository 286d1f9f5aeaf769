"""``recognize(ink)``: which LaTeX symbol is this drawing?

The default model ships inside the package (``strokes/data/default_model.pt``);
any checkpoint written by :mod:`strokes.training.train` works through ``model=``.
Models are loaded once, cached per file, and safe to share between threads
(inference holds no state; loading is guarded by a lock).

``user_symbols=`` (a SQLite path, a ``postgresql://`` DSN or a store) ranks the
symbols taught with :func:`strokes.teach` together with the built-in ones; see
the module ``strokes.teach`` for how, and for what a taught known label does.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_MODEL = Path(__file__).resolve().parent / "data" / "default_model.pt"
#: With ``Recognizer(loaded, parallel=True)``, a late fusion's members run side by side, one in a
#: helper thread, for batches up to this size (0 turns it off everywhere).
PARALLEL_MAX_BATCH = 8
#: A single ink's model call runs through a traced, frozen TorchScript graph of the model once
#: inputs of the same shapes have come this many times: a few calls never pay the trace (about
#: 0.2 s, once), a server or a session soon does. Python's per-module and per-op overhead is then
#: gone (the default model's batch-1 forward: 3.3 -> 2.4 ms on two cores). 0 turns it off everywhere.
TRACE_AFTER = 8
#: At most this many input shapes get a graph (a model whose pipeline does not fix the number of
#: points sees many shapes: the others run eagerly).
TRACE_MAX_SHAPES = 4

__all__ = ["Recognizer", "recognize", "recognize_batch", "get_recognizer", "final_linear", "DEFAULT_MODEL"]


class Recognizer:
    """A loaded model with its pipeline and render config; call it on ink."""

    def __init__(self, loaded, device: str = "cpu", parallel: bool = False, trace: bool = True):
        """``parallel``: run a late fusion's members side by side on small batches. Off by default:
        on two cores the helper thread's OpenMP team and the caller's oversubscribe them
        (``benchmarks/bench_members.py``).

        ``trace``: on the CPU, run single inks through a traced, frozen graph of the model
        (``TRACE_AFTER``), checked against the eager model on the ink it was traced on
        (any difference, or a failure to trace, and that shape stays eager). Models with
        recurrent layers are never traced (their traced graph would pack every batch)."""
        from .training.checkpoint import LoadedModel

        if not isinstance(loaded, LoadedModel):
            raise TypeError(f"expected a strokes.training.checkpoint.LoadedModel, got {type(loaded).__name__}")
        import torch

        self.loaded = loaded
        self.device = torch.device(device)
        # an inference copy with each BatchNorm folded into the conv before it (same outputs, faster)
        self.model = fuse_conv_bn(copy.deepcopy(loaded.model)).to(self.device).eval()
        # image convolutions read NHWC fastest (about 20% off the forward of vgg_gap at batch 1 on CPU)
        self.channels_last = loaded.input_kind in ("image", "both")
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)  # 4-D weights only
        self.vocab = np.array(loaded.vocab, dtype=object)
        # the final linear layer: its input is the embedding that teaching works in (None: cannot teach).
        # For a late fusion it is one member's (see final_linear), whose logits are not the model's.
        self.classifier = final_linear(self.model)
        self._member_scale = self.classifier is not None and self.classifier is not _own_head(self.model)
        self._captured = threading.local()
        if self.classifier is not None:
            self.classifier.register_forward_hook(self._capture)
        self.lock = threading.Lock()  # guards the per-store caches of taught symbols (strokes.teach)
        members = getattr(self.model, "members", None) if loaded.name == "late_fusion" else None
        self.parallel = bool(parallel and members is not None and len(members) > 1 and PARALLEL_MAX_BATCH > 0)
        self._pool = None  # made on first use, and again in a forked child (whose copy has no threads)
        self._pool_pid = None
        self.taught: dict = {}
        rnn = any(isinstance(m, torch.nn.RNNBase) for m in self.model.modules())
        self.trace = bool(trace and TRACE_AFTER > 0 and self.device.type == "cpu" and not self.parallel and not rnn)
        self._graphs: dict = {}  # input shapes -> traced graph, or None where tracing failed or disagreed
        self._shape_calls: dict = {}  # input shapes -> single-ink calls so far (until traced)
        self._trace_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Recognizer({self.loaded!r})"

    @property
    def classes(self) -> list[str]:
        return list(self.loaded.vocab)

    def _inputs(self, inks: Sequence) -> dict:
        import torch

        from rendering import rasterize_batch

        from .formats import ink_to_points3
        from .ink import as_ink
        from .normalize import PenBatch

        arrays = []
        for i, ink in enumerate(inks):  # parsing and validation are per ink; the pipeline is not
            try:
                arrays.append(ink_to_points3(as_ink(ink), dtype=np.float64))
            except ValueError as exc:
                raise ValueError(f"ink {i}: {exc}" if len(inks) > 1 else str(exc)) from None
        raw_lengths = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
        raw = PenBatch(np.concatenate(arrays), np.concatenate([[0], np.cumsum(raw_lengths)]))
        image_pipeline = self.loaded.image_pipeline if self.loaded.input_kind == "both" else None
        shared = _shared_prefix(self.loaded.pipeline, image_pipeline)
        common = raw if not shared else type(self.loaded.pipeline)(self.loaded.pipeline.steps[:shared])(raw)
        batch = type(self.loaded.pipeline)(self.loaded.pipeline.steps[shared:])(common)  # vectorized over the whole batch
        points = batch.data.astype(np.float32, copy=False)
        offsets = batch.offsets
        lengths = np.diff(offsets)
        n = len(lengths)
        kind = self.loaded.input_kind
        out = {}
        if kind in ("sequence", "both"):
            padded = np.zeros((n, int(lengths.max()), 3), np.float32)  # (B, T, 3)
            rows = np.repeat(np.arange(n), lengths)
            cols = np.arange(len(points)) - np.repeat(offsets[:-1], lengths)
            padded[rows, cols] = points
            out["points"] = torch.from_numpy(padded).to(self.device)
            out["lengths"] = torch.from_numpy(lengths).to(self.device)
        if kind in ("image", "both"):
            if image_pipeline is not None:  # the image member reads other normalized points; the shared steps ran once
                other = type(image_pipeline)(image_pipeline.steps[shared:])(common)
                points, offsets = other.data.astype(np.float32, copy=False), other.offsets
            img = rasterize_batch(points, offsets, config=self.loaded.render)  # numpy: fastest for small batches
            out["image"] = torch.from_numpy(img).to(self.device).contiguous(memory_format=torch.channels_last)  # (B, C, S, S)
        return out

    def _capture(self, module, args, output) -> None:
        if getattr(self._captured, "on", False):
            self._captured.features = args[0]
            self._captured.logits = output

    def logits_and_features(self, inks: Sequence) -> tuple[np.ndarray, np.ndarray]:
        """``(N, num_classes)`` float32 logits and ``(N, D)`` float32 embeddings (the input of the
        final linear layer) for a sequence of inks, from one model call.

        For a late fusion, whose embedding is one member's (:func:`final_linear`), the logits are
        the ensemble's log-probabilities shifted row by row onto that member's logit scale
        (``s + logsumexp(member logits)``): the same softmax, and exactly the member's logits
        when it is the only member, so that taught rows calibrated on the member's classifier
        compare with them.

        Raises:
            ValueError: when the model has no final linear layer to read the embedding from.
        """
        import torch

        if self.classifier is None:
            raise ValueError(f"{self.loaded.name} has no final linear classifier layer, so it has no embedding to teach with")
        dim = self.classifier.in_features
        if len(inks) == 0:
            return np.zeros((0, len(self.vocab)), np.float32), np.zeros((0, dim), np.float32)
        inputs = self._inputs(inks)
        with torch.inference_mode():
            logits, feats, member_logits = self._run(inputs, features=True)  # (N, C), (N, D), (N, C)
            if self._member_scale:
                logits = torch.log_softmax(logits.float(), 1) + torch.logsumexp(member_logits.float(), 1, keepdim=True)
        return logits.float().cpu().numpy(), feats.float().cpu().numpy()

    def _eager(self, inputs: dict, features: bool) -> tuple:
        """(logits, embedding, the embedding's classifier's logits); the last two None unless ``features``."""
        if not features:
            return self._forward(inputs), None, None
        self._captured.on = True
        try:
            logits = self.model(**inputs)  # (N, C)
            return logits, self._captured.features, self._captured.logits  # (N, C), (N, D), (N, C)
        finally:
            self._captured.on = False
            self._captured.features = self._captured.logits = None

    def _run(self, inputs: dict, features: bool = False) -> tuple:
        """:meth:`_eager`'s outputs, from the traced graph where a single ink's shapes have one."""
        graph = self._graph(inputs) if self.trace and len(next(iter(inputs.values()))) == 1 else None
        if graph is None:
            return self._eager(inputs, features)
        out = graph(**inputs)  # (logits,) or (logits, embedding, its layer's logits): features need a classifier
        return out if features else (out[0], None, None)

    def _graph(self, inputs: dict):
        """The traced graph for inputs of these shapes: None until the shapes' ``TRACE_AFTER``-th
        call, then made once (None for good where it cannot be made or disagrees with the model)."""
        key = tuple((k, tuple(v.shape), v.dtype) for k, v in inputs.items())
        if key in self._graphs:
            return self._graphs[key]
        with self._trace_lock:
            if key in self._graphs:
                return self._graphs[key]
            calls = self._shape_calls[key] = self._shape_calls.get(key, 0) + 1
            if calls < TRACE_AFTER or len(self._graphs) >= TRACE_MAX_SHAPES:
                return None
            del self._shape_calls[key]
            self._graphs[key] = graph = self._make_graph(inputs)
            return graph

    def _make_graph(self, inputs: dict):
        import warnings

        import torch

        rec = self

        class Outputs(torch.nn.Module):
            """:meth:`Recognizer._eager`'s outputs as a tuple of tensors (the embedding's two only when the model can be taught)."""

            def __init__(self):
                super().__init__()
                self.model = rec.model  # registered, so the trace sees (and freezes) its parameters

            def forward(self, points=None, lengths=None, image=None):
                kw = {k: v for k, v in (("points", points), ("lengths", lengths), ("image", image)) if v is not None}
                out = rec._eager(kw, features=rec.classifier is not None)
                return out if out[1] is not None else out[:1]

        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # TracerWarnings of the input checks (constant here), and deprecations
                graph = torch.jit.freeze(torch.jit.trace(Outputs().eval(), example_kwarg_inputs=inputs, check_trace=False))
                with torch.inference_mode():
                    got, want = graph(**inputs), self._eager(inputs, features=self.classifier is not None)
                same = all(torch.allclose(g.float(), w.float(), rtol=1e-4, atol=1e-4) for g, w in zip(got, want) if w is not None)
        except Exception as exc:  # noqa: BLE001: any failure to trace leaves the model eager
            log.info("%s stays eager for inputs %s: tracing failed (%s)", self.loaded.name, _shapes(inputs), exc)
            return None
        if not same:
            log.info("%s stays eager for inputs %s: its traced graph disagrees with it", self.loaded.name, _shapes(inputs))
            return None
        log.debug("%s: traced a graph for inputs %s", self.loaded.name, _shapes(inputs))
        return graph

    def probabilities(self, inks: Sequence) -> np.ndarray:
        """``(N, num_classes)`` float32 class probabilities for a sequence of inks."""
        import torch

        if len(inks) == 0:
            return np.zeros((0, len(self.vocab)), np.float32)
        inputs = self._inputs(inks)
        with torch.inference_mode():
            logits = self._run(inputs)[0]  # (N, C)
            return torch.softmax(logits.float(), dim=1).cpu().numpy()

    def _forward(self, inputs: dict):
        """The model's logits for ``inputs``; a late fusion's members side by side on small batches.

        Member 0 runs here, the others in the helper threads (each under ``inference_mode``,
        which is per thread); the weighted sum of their log-probabilities is the model's own
        head, so the result is the model's forward, bit for bit.
        """
        import torch

        n = len(next(iter(inputs.values())))
        if not self.parallel or n > PARALLEL_MAX_BATCH:
            return self.model(**inputs)
        model = self.model
        if self._pool is None or self._pool_pid != os.getpid():
            from concurrent.futures import ThreadPoolExecutor

            with self.lock:
                if self._pool is None or self._pool_pid != os.getpid():
                    self._pool = ThreadPoolExecutor(max_workers=len(model.members) - 1, thread_name_prefix="strokes-member")
                    self._pool_pid = os.getpid()

        def member(i: int):
            with torch.inference_mode():
                return model.member_log_probs(i, inputs.get("points"), inputs.get("lengths"), inputs.get("image"))  # (N, C)

        others = [self._pool.submit(member, i) for i in range(1, len(model.members))]
        outs = [member(0)] + [f.result() for f in others]
        return model.head(torch.cat(outs, dim=1))  # (N, C)

    def batch(self, inks: Sequence, k: int = 5, user_symbols=None, method: str | None = None) -> list[list[tuple[str, float]]]:
        """Top-``k`` (label, probability) lists, best first, for each ink.

        ``user_symbols``: a store of taught symbols (see :func:`strokes.teach`), ranked with the
        built-in classes; ``method``: how taught symbols are scored, ``"imprint"`` or
        ``"prototype"`` (default ``strokes.teach.DEFAULT_METHOD``, prototype).
        """
        _check_k(k, len(self.vocab))  # a bad k fails before any store is read
        if isinstance(inks, np.ndarray) and inks.ndim == 2:
            raise TypeError("recognize_batch takes a sequence of inks; for one ink use recognize()")
        head = None
        if user_symbols is not None:
            from .teach import taught_head

            head = taught_head(self, user_symbols, method)
        if head is None:
            k = _check_k(k, len(self.vocab))
            prob = self.probabilities(list(inks))
            labels = self.vocab
        else:
            k = _check_k(k, len(head.labels))
            prob = head.probabilities(*self.logits_and_features(list(inks)))
            labels = head.labels
        top = np.argsort(-prob, axis=1, kind="stable")[:, :k]  # (N, k)
        return [[(str(labels[j]), float(p[j])) for j in row] for p, row in zip(prob, top)]

    def __call__(self, ink, k: int = 5, user_symbols=None, method: str | None = None) -> list[tuple[str, float]]:
        return self.batch([ink], k, user_symbols, method)[0]

    def image_probabilities(self, images, ink: str = "bright") -> np.ndarray:
        """``(N, num_classes)`` class probabilities for ready-made images (image models only).

        Args:
            images: ``(N, S, S)`` or one ``(S, S)`` array, floats in ``[0, 1]``
                or uint8 in ``[0, 255]``, of the model's render size.
            ink: ``"bright"`` (the toolkit's convention, 1 = ink) or ``"dark"``
                (dark ink on a bright page, as in HASYv2's PNGs: inverted first).

        Returns:
            float32 probabilities, one row per image.
        """
        import torch

        if self.loaded.input_kind != "image":
            raise ValueError(f"{self.loaded.name} reads {self.loaded.input_kind} input; only image models classify images")
        if ink not in ("bright", "dark"):
            raise ValueError(f"ink must be 'bright' or 'dark', got {ink!r}")
        arr = np.asarray(images)
        if arr.ndim == 2:
            arr = arr[None]
        size = self.loaded.render.size
        if arr.ndim != 3 or arr.shape[1:] != (size, size):
            raise ValueError(f"images must be (N, {size}, {size}) or ({size}, {size}), got {arr.shape}")
        if self.loaded.render.n_planes != 1:
            raise ValueError(f"{self.loaded.name} expects {self.loaded.render.n_planes} planes per image, not one")
        arr = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
            raise ValueError("image values must be in [0, 1] (or uint8)")
        if ink == "dark":
            arr = 1.0 - arr
        with torch.inference_mode():
            logits = self.model(image=torch.from_numpy(arr).unsqueeze(1).to(self.device).contiguous(memory_format=torch.channels_last))  # (N, 1, S, S) NHWC -> (N, C)
            return torch.softmax(logits.float(), dim=1).cpu().numpy()

    def classify_images(self, images, k: int = 5, ink: str = "bright") -> list[list[tuple[str, float]]]:
        """Top-``k`` (label, probability) lists for each image (see :meth:`image_probabilities`)."""
        k = _check_k(k, len(self.vocab))
        prob = self.image_probabilities(images, ink)
        top = np.argsort(-prob, axis=1, kind="stable")[:, :k]  # (N, k)
        return [[(str(self.vocab[j]), float(p[j])) for j in row] for p, row in zip(prob, top)]


def _shapes(inputs: dict) -> str:
    return ", ".join(f"{k} {tuple(v.shape)}" for k, v in inputs.items())


def _shared_prefix(pipeline, other) -> int:
    """How many leading steps ``pipeline`` and ``other`` share (0 when ``other`` is None); steps are immutable values."""
    if other is None:
        return 0
    n = 0
    for a, b in zip(pipeline.steps, other.steps):
        if a != b:
            break
        n += 1
    return n


def _own_head(model):
    """The ``nn.Linear`` that computes ``model``'s own logits (``model.head`` or its last layer), or None."""
    import torch.nn as nn

    head = getattr(model, "head", None)
    if isinstance(head, nn.Linear):
        return head
    if isinstance(head, nn.Sequential) and len(head) and isinstance(head[-1], nn.Linear):
        return head[-1]
    return None


def final_linear(model):
    """The ``nn.Linear`` whose input is the embedding taught symbols live in, or None.

    ``model.head`` or its last layer; for a late fusion (``model.members``), whose head
    mixes log-probabilities, the final linear layer of its first image-reading member
    (drawing order does not move its embedding), else of its first member that has one.
    """
    own = _own_head(model)
    members = getattr(model, "members", None)
    if own is not None or members is None:
        return own
    kinds = list(getattr(model, "member_kinds", [])) or [getattr(m, "input_kind", "") for m in members]
    ranked = [m for m, k in zip(members, kinds) if k == "image"] + [m for m, k in zip(members, kinds) if k != "image"]
    for member in ranked:
        lin = _own_head(member)
        if lin is not None:
            return lin
    return None


def fuse_conv_bn(model):
    """Fold every BatchNorm that directly follows a conv inside an ``nn.Sequential`` into that conv.

    For inference only (the model is put in eval mode); the module tree keeps its
    shape, the BatchNorm becoming an ``nn.Identity``.
    """
    import torch.nn as nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model.eval()
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, (nn.Conv1d, nn.Conv2d)) and isinstance(bn, (nn.BatchNorm1d, nn.BatchNorm2d)):
                if bn.track_running_stats and bn.running_mean is not None:
                    seq[i] = fuse_conv_bn_eval(conv, bn)
                    seq[i + 1] = nn.Identity()
    return model


def _check_k(k, n_classes: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    return int(min(k, n_classes))


_cache: dict[tuple, Recognizer] = {}
_lock = threading.Lock()


def get_recognizer(model=None, device: str = "cpu") -> Recognizer:
    """The cached :class:`Recognizer` for ``model``.

    Args:
        model: None (the shipped default, or ``$STROKES_MODEL``), a checkpoint
            path, a :class:`strokes.training.checkpoint.LoadedModel`, or a :class:`Recognizer`
            (returned as it is).
        device: where to run the model.

    Raises:
        FileNotFoundError: when the checkpoint (or the default model) is missing.
        TypeError: for a ``model`` of another type.
    """
    from .training.checkpoint import LoadedModel, load_checkpoint

    if isinstance(model, Recognizer):
        return model
    if isinstance(model, LoadedModel):
        return Recognizer(model, device)
    if model is None:
        model = os.environ.get("STROKES_MODEL") or DEFAULT_MODEL
        if not Path(model).exists():
            raise FileNotFoundError(
                f"no default model at {model}: reinstall strokes, or pass model='path/to/checkpoint.pt' "
                "(train one with `strokes train`)"
            )
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be None, a checkpoint path, a LoadedModel or a Recognizer, got {type(model).__name__}")
    path = Path(model).resolve()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {model} does not exist: check the path")
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size, str(device))
    with _lock:
        rec = _cache.get(key)
        if rec is None:
            rec = Recognizer(load_checkpoint(path, device=device), device)
            _cache.clear() if len(_cache) > 8 else None
            _cache[key] = rec
            log.info("loaded %r", rec)
    return rec


def recognize(ink, k: int = 5, model=None, user_symbols=None) -> list[tuple[str, float]]:
    """The ``k`` most likely LaTeX symbols for one drawing, best first.

    Args:
        ink: a list of strokes of ``(x, y)`` / ``(x, y, t)`` points or of
            ``{"x", "y", "t"}`` dicts, numpy arrays, or one ``(n, 3)``
            ``[x, y, pen_up]`` array (see :func:`strokes.as_ink`).
        k: how many symbols to return.
        model: which model (see :func:`strokes.recognizer.get_recognizer`); default the shipped one.
        user_symbols: None (built-in symbols only), or where :func:`strokes.teach` stored
            taught symbols: a SQLite path, a ``postgresql://`` DSN, or a store object
            (``strokes.io.user_symbols.UserSymbolStore``). Taught and built-in symbols
            are ranked together; a taught label the model knows adds the user's way of
            drawing it. A missing SQLite file is a FileNotFoundError.

    Returns:
        ``k`` ``(label, probability)`` pairs, best first.

    Raises:
        ValueError: for malformed ink, saying what is wrong.
    """
    return get_recognizer(model)(ink, k, user_symbols)


def recognize_batch(inks: Sequence, k: int = 5, model=None, user_symbols=None) -> list[list[tuple[str, float]]]:
    """:func:`recognize` for many inks at once (one vectorized model call)."""
    return get_recognizer(model).batch(inks, k, user_symbols)
