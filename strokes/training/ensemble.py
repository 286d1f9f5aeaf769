"""Late fusion of separately trained checkpoints (issue 15).

:func:`build_ensemble` loads member checkpoints (say a sequence GRU and an image
CNN trained on the same data with the same normalization pipeline), scores each
on the validation split they were trained against, fits one weight per member
with :func:`fit_weights`, and returns a self-describing checkpoint of a
``late_fusion`` model (:mod:`models.ensemble`) whose logits are the weighted sum
of the members' log-probabilities. That checkpoint works wherever any other does:
``strokes.recognize(ink, model=path)``, :func:`strokes.training.evaluate.evaluate`,
ONNX export.

The weights live on the simplex (non-negative, summing to 1) and maximize the
validation log-likelihood of the normalized geometric mixture
``softmax(sum_i w_i log p_i)``. That objective is concave in the weights, so the
fit has no spurious local optimum; see :func:`fit_weights`.

Example:
    >>> ckpt = build_ensemble(["runs/gru/best.pt", "runs/lenet5/best.pt"], ds)
    >>> save_checkpoint(ckpt, "runs/ensemble.pt")
    >>> ckpt["metrics"]["weights"], ckpt["metrics"]["val"]["top1"]
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["fit_weights", "combine_logits", "mixture_nll", "build_ensemble", "save_ensemble"]

#: The registered name of the model :func:`build_ensemble` makes.
ENSEMBLE_MODEL = "late_fusion"


# --------------------------------------------------------------------------- weights


def _check_logits(logits_list, labels=None):
    """The members' log-probabilities ``(M, N, C)`` float64 and the labels ``(N,)`` int64, validated."""
    import torch

    if isinstance(logits_list, (str, bytes)) or not isinstance(logits_list, (list, tuple)) or not logits_list:
        raise TypeError("logits_list must be a non-empty list of (N, C) logit tensors, one per member")
    stacked = []
    for i, lg in enumerate(logits_list):
        if not isinstance(lg, (torch.Tensor, np.ndarray)):
            raise TypeError(f"logits_list[{i}] must be a tensor or numpy array, got {type(lg).__name__}")
        lg = torch.as_tensor(lg).detach().cpu()
        if not lg.is_floating_point() or lg.ndim != 2 or lg.shape[0] < 1 or lg.shape[1] < 2:
            raise ValueError(f"logits_list[{i}] must be float (N, C) with N >= 1 and C >= 2, got {lg.dtype} {tuple(lg.shape)}")
        if stacked and lg.shape != stacked[0].shape:
            raise ValueError(
                f"logits_list[{i}] has shape {tuple(lg.shape)} but logits_list[0] has {tuple(stacked[0].shape)}: "
                "every member must score the same samples over the same classes"
            )
        if not bool(torch.isfinite(lg).all()):
            raise ValueError(f"logits_list[{i}] holds NaN or infinite values")
        stacked.append(lg.double())
    log_probs = torch.log_softmax(torch.stack(stacked), dim=2)  # (M, N, C)
    if labels is None:
        return log_probs, None
    if not isinstance(labels, (torch.Tensor, np.ndarray)):
        raise TypeError(f"labels must be a tensor or numpy array of class indices, got {type(labels).__name__}")
    y = torch.as_tensor(labels).detach().cpu()
    n, c = log_probs.shape[1:]
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool or y.shape != (n,):
        raise ValueError(f"labels must be ({n},) integer class indices, got {y.dtype} {tuple(y.shape)}")
    if int(y.min()) < 0 or int(y.max()) >= c:
        raise ValueError(f"labels must lie in [0, {c}), got values from {int(y.min())} to {int(y.max())}")
    return log_probs, y.long()


def _check_weights(weights, m: int):
    import torch

    if isinstance(weights, (str, bytes)) or not isinstance(weights, (list, tuple, np.ndarray, torch.Tensor)):
        raise TypeError(f"weights must be a list of {m} numbers, got {type(weights).__name__}")
    w = torch.as_tensor(np.asarray(weights, dtype=np.float64))
    if w.shape != (m,) or not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ValueError(f"weights must be {m} finite numbers >= 0 (one per member), got {list(np.asarray(weights).ravel())}")
    return w


def combine_logits(logits_list, weights):
    """``sum_i weights[i] * log_softmax(logits_list[i])`` ``(N, C)`` float64: the ``late_fusion`` output for these members.

    A member of weight 0 adds exactly 0 (as in the model).
    """
    import torch

    log_probs, _ = _check_logits(logits_list)  # (M, N, C)
    w = _check_weights(weights, log_probs.shape[0])  # (M,)
    terms = torch.where(w.view(-1, 1, 1) > 0, log_probs * w.view(-1, 1, 1), 0.0)  # (M, N, C)
    return terms.sum(0)  # (N, C)


def _nll(log_probs, target, w):
    """Mean negative log-likelihood of softmax(sum_i w_i log p_i): ``(M, N, C)``, ``(M, N)``, ``(M,)`` -> scalar."""
    import torch

    mixed = torch.einsum("m,mnc->nc", w, log_probs)  # (N, C)
    return (torch.logsumexp(mixed, dim=1) - w @ target).mean()  # -(s_y - logsumexp(s)), averaged


def mixture_nll(logits_list, labels, weights) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(combine_logits(logits_list, weights))``."""
    import torch

    _, y = _check_logits(logits_list, labels)
    return float(torch.nn.functional.cross_entropy(combine_logits(logits_list, weights), y))


def fit_weights(logits_list, labels, *, steps: int = 100, seed: int = 0, restarts: int = 2) -> list[float]:
    """Member weights, non-negative and summing to 1, maximizing the log-likelihood of ``labels``.

    The objective is the mean log-likelihood of the normalized geometric mixture
    ``softmax(sum_i w_i * log_softmax(logits_i))``, i.e. the ``late_fusion`` output. It is
    concave in ``w`` (a linear term minus a log-sum-exp of linear terms), so every local
    optimum on the simplex is global. The weights are parameterized as ``softmax(theta)``
    and optimized by full-batch L-BFGS (strong Wolfe line search, float64) from equal
    weights and from ``restarts`` starting points drawn from a generator seeded by
    ``seed``. The best of those results, the equal weights and every single member
    (weight 1 on it) is returned, so the fit is never worse on this data than any one
    member or the plain average. Deterministic: the same inputs give the same weights.

    Args:
        logits_list: one ``(N, C)`` tensor (or array) per member: its logits (or
            log-probabilities) on the same ``N`` samples; log-softmax is applied here.
        labels: ``(N,)`` true class indices.
        steps: L-BFGS iterations per starting point.
        seed: seeds the restarts' starting points.
        restarts: random starting points besides the equal weights.

    Returns:
        One float per member, each >= 0, summing to 1.

    Raises:
        TypeError, ValueError: for inputs of the wrong type, shape or values.

    Memory: the members' log-probabilities are held as float64, ``8 * M * N * C`` bytes.
    """
    import torch

    for name, value, low in (("steps", steps, 1), ("restarts", restarts, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    with torch.inference_mode(False), torch.enable_grad():  # callable from inference code too
        return _fit_weights(logits_list, labels, steps, seed, restarts)


def _fit_weights(logits_list, labels, steps: int, seed: int, restarts: int) -> list[float]:
    import torch

    log_probs, y = _check_logits(logits_list, labels)  # (M, N, C), (N,)
    m = log_probs.shape[0]
    if m == 1:
        return [1.0]
    target = log_probs.gather(2, y.view(1, -1, 1).expand(m, -1, 1)).squeeze(2)  # (M, N): log p_i(true class)

    def descend(theta0):
        theta = theta0.clone().requires_grad_(True)  # (M,)
        opt = torch.optim.LBFGS(
            [theta], lr=1.0, max_iter=steps, history_size=20, tolerance_grad=1e-12, tolerance_change=1e-15,
            line_search_fn="strong_wolfe",
        )

        def closure():
            opt.zero_grad()
            loss = _nll(log_probs, target, torch.softmax(theta, 0))
            loss.backward()
            return loss

        opt.step(closure)
        return torch.softmax(theta.detach(), 0)  # (M,)

    gen = torch.Generator().manual_seed(seed)
    starts = [torch.zeros(m, dtype=torch.float64)] + [
        torch.randn(m, generator=gen, dtype=torch.float64) for _ in range(restarts)
    ]
    candidates = [descend(t) for t in starts]
    candidates += [torch.full((m,), 1.0 / m, dtype=torch.float64)] + list(torch.eye(m, dtype=torch.float64))
    with torch.no_grad():
        scores = [float(_nll(log_probs, target, w)) for w in candidates]
    best = candidates[int(np.argmin(scores))]  # the first of equals: deterministic
    best = best.clamp_min(0.0) / best.clamp_min(0.0).sum()
    return [float(v) for v in best]


# --------------------------------------------------------------------------- building


def _load_members(checkpoints, device):
    """(name, LoadedModel) per member source: a path, a checkpoint dict or a LoadedModel."""
    import copy
    import dataclasses

    from .checkpoint import LoadedModel, load_checkpoint

    if isinstance(checkpoints, (str, bytes, dict, os.PathLike)) or not isinstance(checkpoints, (list, tuple)):
        raise TypeError("checkpoints must be a list of member checkpoints (paths, checkpoint dicts or LoadedModels)")
    if len(checkpoints) < 2:
        raise ValueError(f"an ensemble needs at least 2 member checkpoints, got {len(checkpoints)}")
    members = []
    for i, source in enumerate(checkpoints):
        if isinstance(source, LoadedModel):
            # a copy: the caller's model keeps its device and mode
            loaded = dataclasses.replace(source, model=copy.deepcopy(source.model).to(device).eval())
        elif isinstance(source, (str, os.PathLike, dict)):
            loaded = load_checkpoint(source, device=device)
        else:
            raise TypeError(f"checkpoints[{i}] must be a path, a checkpoint dict or a LoadedModel, got {type(source).__name__}")
        where = str(source) if isinstance(source, (str, os.PathLike)) else loaded.source
        name = where if where != "<memory>" else f"member {i} ({loaded.name})"
        members.append((name, loaded))
    return members


def _first_difference(a: list, b: list) -> str:
    if len(a) != len(b):
        return f"{len(a)} vs {len(b)} labels"
    if sorted(a) == sorted(b):
        i = next(k for k, (x, y) in enumerate(zip(a, b)) if x != y)
        return f"the same labels in a different order (index {i}: {a[i]!r} vs {b[i]!r})"
    only = sorted(set(a) ^ set(b))
    return f"different labels ({', '.join(repr(v) for v in only[:5])}{' ...' if len(only) > 5 else ''} in only one)"


def _check_compatible(members) -> tuple:
    """The shared (vocab, pipeline, image_pipeline, render) of the members, or a ValueError naming who differs in what.

    The members reading points (sequence or both) must share one pipeline, the ensemble's
    ``pipeline``; those reading images (image or both) one pipeline and one render config.
    ``image_pipeline`` is the image readers' pipeline when it differs from the point
    readers' (say a TCN on ink resampled to 48 points and a CNN on the ink as drawn),
    else None.
    """
    (name0, first) = members[0]
    for name, m in members[1:]:
        if list(m.vocab) != list(first.vocab):
            raise ValueError(
                f"{name0} and {name} have different vocabularies: {_first_difference(list(first.vocab), list(m.vocab))}; "
                "an ensemble adds up class i of every member, so the members must be trained on the same data "
                "(the same labels in the same order)"
            )
    point_readers = [(n, m) for n, m in members if m.input_kind in ("sequence", "both")]
    readers = [(n, m) for n, m in members if m.input_kind in ("image", "both")]
    for group, what in ((point_readers, "point sequences"), (readers, "images")):
        for name, m in group[1:]:
            if m.checkpoint["pipeline"] != group[0][1].checkpoint["pipeline"]:
                raise ValueError(
                    f"{group[0][0]} and {name} both read {what} but normalize ink differently: {group[0][1].pipeline!r} vs "
                    f"{m.pipeline!r}; the ensemble normalizes each ink once for its {what}. Train those members with the "
                    f"same TrainConfig.pipeline, e.g. pipeline={group[0][1].checkpoint['pipeline']!r}"
                )
    for name, m in readers[1:]:
        if m.checkpoint["render"] != readers[0][1].checkpoint["render"]:
            raise ValueError(
                f"{readers[0][0]} and {name} read different renders: {readers[0][1].checkpoint['render']} vs "
                f"{m.checkpoint['render']}; the ensemble renders each ink once. Train the image members with the "
                f"same TrainConfig.render, e.g. render={readers[0][1].checkpoint['render']!r}"
            )
    points_from = point_readers[0][1] if point_readers else first
    render_from = readers[0][1] if readers else first
    separate = render_from.checkpoint["pipeline"] != points_from.checkpoint["pipeline"]
    return list(first.vocab), points_from.pipeline, (render_from.pipeline if separate else None), render_from.render


def _resolve_split(members, ds, split):
    """(val indices, test indices or None, split description) for fitting and scoring."""
    from ..splits import Split
    from .train import checkpoint_split

    if split is not None:
        if isinstance(split, Split):
            val, test, mode = np.asarray(split.val), np.asarray(split.test), split.mode
        elif isinstance(split, (np.ndarray, list, tuple)):
            val, test, mode = np.asarray(split), None, "given"
        else:
            raise TypeError(f"split must be a strokes.Split or an array of validation indices, got {type(split).__name__}")
        if val.ndim != 1 or len(val) == 0 or not np.issubdtype(val.dtype, np.integer):
            raise ValueError(f"the validation indices must be a non-empty 1-D integer array, got {val.dtype} {val.shape}")
        if int(val.min()) < 0 or int(val.max()) >= len(ds):
            raise ValueError(f"the validation indices must lie in [0, {len(ds)}) for {ds.name}")
        info = {"mode": "given", "given_mode": mode, "val": int(len(val)), "test": None if test is None else int(len(test)),
                "dataset": ds.name, "fingerprint": ds.fingerprint()}
        return val, (test if test is not None and len(test) else None), info

    splits = []
    for name, m in members:
        try:
            splits.append(checkpoint_split(m.checkpoint, ds))
        except (ValueError, KeyError) as exc:
            raise ValueError(
                f"cannot rebuild the split {name} was trained on: {exc}; pass split= (a strokes.Split or the "
                "validation indices) to fit the weights on held-out samples of your choosing"
            ) from None
    (name0, _), sp0 = members[0], splits[0]
    for (name, _), sp in zip(members[1:], splits[1:]):
        if not (np.array_equal(sp.val, sp0.val) and np.array_equal(sp.test, sp0.test)):
            raise ValueError(
                f"{name0} and {name} were trained on different splits of {ds.name} ({sp0.describe()} vs {sp.describe()}): "
                "fitting weights on one member's validation samples would score another on samples it trained on. "
                "Train the members with the same split, val, test and seed, or pass split= explicitly"
            )
    info = dict(members[0][1].checkpoint["train"].get("split_info") or {})
    return sp0.val, (sp0.test if len(sp0.test) else None), info


def _scores(logits, labels) -> dict:
    """``{"loss", "top1", "top5"}`` of ``(N, C)`` logits (or log-probabilities) against ``(N,)`` labels."""
    import torch

    logits = logits.double()  # (N, C)
    top = logits.topk(min(5, logits.shape[1]), dim=1).indices  # (N, k)
    hit = top == labels.unsqueeze(1)  # (N, k)
    n = len(labels)
    return {
        "loss": float(torch.nn.functional.cross_entropy(logits, labels)),
        "top1": int(hit[:, 0].sum()) / n,  # exact counts, as evaluate() reports them
        "top5": int(hit.any(1).sum()) / n,
    }


def _member_logits(members, ds, indices, vocab, device, batch_size):
    """Each member's logits ``(N, C)`` on ``ds[indices]``, each with its own pipeline (normalized once per
    distinct pipeline), and the labels ``(N,)``."""
    import torch

    from .batching import dataset_tensors
    from .train import evaluate_logits

    sub = ds.subset(indices)
    index = {v: i for i, v in enumerate(vocab)}
    mapped = np.array([index.get(v, -1) for v in sub.vocab], dtype=np.int64)[sub.labels]  # (N,)
    if (mapped < 0).any():
        missing = sorted({sub.vocab[j] for j in np.asarray(sub.labels)[mapped < 0]})
        raise ValueError(f"{ds.name} has held-out samples of classes the members do not know: {missing[:5]}")
    tensors: dict = {}  # one normalization per distinct pipeline
    logits = []
    for _, m in members:
        key = repr(m.checkpoint["pipeline"])
        if key not in tensors:
            tensors[key] = dataset_tensors(sub, m.pipeline, device=device)
        logits.append(evaluate_logits(m.model, tensors[key], m.input_kind, m.render, batch_size))
    return logits, torch.from_numpy(mapped)


def build_ensemble(
    checkpoints,
    ds,
    *,
    split=None,
    device="cpu",
    batch_size: int = 1024,
    steps: int = 100,
    seed: int = 0,
) -> dict:
    """A ``late_fusion`` checkpoint of ``checkpoints`` with weights fitted on ``ds``'s validation split.

    Args:
        checkpoints: two or more member checkpoints: paths, checkpoint dicts or
            :class:`~strokes.training.checkpoint.LoadedModel`\\ s. They must share the
            vocabulary (same labels, same order); those that read point sequences one
            normalization pipeline; those that read images one pipeline and render
            config. When the two pipelines differ, the checkpoint keeps the image
            readers' as its ``image_pipeline``.
        ds: the data the members were trained on (a :class:`strokes.StrokeDataset`).
        split: None to use the validation split the members were trained against
            (:func:`~strokes.training.train.checkpoint_split`; all members must agree on
            it), or a :class:`strokes.Split` (its ``val`` fits the weights, its ``test``
            is scored), or an array of validation indices into ``ds``.
        device: where the members run while scoring.
        batch_size: samples per forward pass.
        steps, seed: passed to :func:`fit_weights`.

    Returns:
        A checkpoint dict (:func:`~strokes.training.checkpoint.make_checkpoint`); save it
        with :func:`~strokes.training.checkpoint.save_checkpoint`. Its ``metrics`` hold the
        ensemble's ``val`` (and ``test``) ``loss``/``top1``/``top5``, the fitted
        ``weights`` and each member's scores under ``members``; its ``train`` records the
        members' sources, models and training configs, and the split (so
        :func:`~strokes.training.train.checkpoint_split` works on it too).

    Raises:
        ValueError: when the members differ in vocabulary, pipeline, render config or
            split (the message names the members, what differs and how to fix it), when
            the split cannot be rebuilt on ``ds``, or for a damaged checkpoint.
        TypeError: for arguments of the wrong type.
    """
    import torch

    import models

    from .batching import check_image_input
    from .checkpoint import make_checkpoint

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    members = _load_members(checkpoints, device)
    vocab, pipeline, image_pipeline, render = _check_compatible(members)
    check_image_input(ds, "both", render, ENSEMBLE_MODEL)  # image-only data has no points for the sequence side
    val_idx, test_idx, split_info = _resolve_split(members, ds, split)

    val_logits, val_labels = _member_logits(members, ds, val_idx, vocab, device, batch_size)
    weights = fit_weights(val_logits, val_labels, steps=steps, seed=seed)
    log.info("fitted weights %s on %d validation samples", [round(w, 4) for w in weights], len(val_idx))

    scored = {"val": (val_logits, val_labels)}
    if test_idx is not None:
        scored["test"] = _member_logits(members, ds, test_idx, vocab, device, batch_size)
    metrics = {"weights": weights, "members": []}
    for part, (logits, labels) in scored.items():
        metrics[part] = _scores(combine_logits(logits, weights), labels)
    for i, (name, m) in enumerate(members):
        row = {"source": name, "model": m.name, "weight": weights[i]}
        row.update({part: _scores(logits[i], labels) for part, (logits, labels) in scored.items()})
        metrics["members"].append(row)
    metrics["split"] = split_info

    spec = [
        {"name": m.name, "config": dict(m.checkpoint["model"]["config"]), "num_classes": len(vocab)} for _, m in members
    ]
    net = models.create_model(ENSEMBLE_MODEL, len(vocab), members=spec, weights=weights, in_channels=render.n_planes)
    with torch.no_grad():
        for (_, m), slot in zip(members, net.members):
            slot.load_state_dict(m.model.state_dict())
    net.eval()

    first_train = members[0][1].checkpoint.get("train") or {}
    train = {
        "model": ENSEMBLE_MODEL,
        "members": [
            {"source": name, "model": m.name, "config": m.checkpoint["model"]["config"], "train": m.checkpoint.get("train") or {}}
            for name, m in members
        ],
        "fit": {"objective": "val log-likelihood", "weights": "simplex (>= 0, sum 1)", "method": "L-BFGS on softmax(theta)",
                "steps": steps, "seed": seed, "val_samples": int(len(val_idx))},
        "split_info": split_info,
    }
    if split is None:  # what checkpoint_split reads, as the members had it
        train.update({k: first_train[k] for k in ("split", "val", "test", "seed") if k in first_train})
    return make_checkpoint(net, vocab=vocab, pipeline=pipeline, render=render, metrics=metrics, train=train, image_pipeline=image_pipeline)


def save_ensemble(checkpoints, ds, output, **kwargs) -> dict:
    """:func:`build_ensemble`, then :func:`~strokes.training.checkpoint.save_checkpoint` to ``output``.

    Returns ``{"path", "weights", "metrics"}`` (the checkpoint's metrics).
    """
    from .checkpoint import save_checkpoint

    ckpt = build_ensemble(checkpoints, ds, **kwargs)
    path = save_checkpoint(ckpt, Path(output))
    return {"path": str(path), "weights": ckpt["metrics"]["weights"], "metrics": ckpt["metrics"]}
