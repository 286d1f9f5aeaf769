"""Evaluation of a checkpoint: top-k, macro recall, per-class table, confusions, plots.

:func:`evaluate` returns a plain-JSON report; :func:`write_report` writes it
with a confusion-matrix PNG and the learning curves of the checkpoint's
training history.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from .._util import atomic_write

log = logging.getLogger(__name__)

__all__ = ["evaluate", "write_report", "confusion_matrix", "most_confused"]


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """``(C, C)`` int64 counts: row = true class, column = predicted class."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (labels, predicted), 1)
    return cm


def most_confused(cm: np.ndarray, vocab, n: int = 20) -> list[dict]:
    """The ``n`` largest off-diagonal cells, as {true, predicted, count, rate}."""
    off = cm.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None, kind="stable")[:n]
    rows, cols = np.unravel_index(flat, off.shape)
    support = cm.sum(1)
    return [
        {"true": vocab[r], "predicted": vocab[c], "count": int(off[r, c]), "rate": float(off[r, c] / max(support[r], 1))}
        for r, c in zip(rows, cols)
        if off[r, c] > 0
    ]


def evaluate(loaded, ds, *, device="cpu", batch_size: int = 1024, progress=None, shared_classes: bool = False) -> dict:
    """Evaluate a :class:`strokes.training.checkpoint.LoadedModel` on every sample of ``ds``.

    ``ds`` is a :class:`strokes.StrokeDataset` (normalized and rendered with
    the checkpoint's own pipeline and render config) or, for image models, a
    :class:`strokes.images.ImageDataset` (its images go in as they are), so a
    model trained on rendered strokes can be scored on HASYv2 images and a
    model trained on HASYv2 on strokes.

    Labels of ``ds`` are matched to the model's vocabulary by name; samples of
    classes the model does not know are counted as errors and reported
    (``unknown_label_samples``); ``top1_known``/``top5_known`` score only the
    samples of classes the model knows.

    Args:
        loaded: the model, from :func:`strokes.training.checkpoint.load_checkpoint`.
        ds: the data.
        device: torch device for inference.
        batch_size: samples per forward pass.
        progress: show a progress bar (None: when on a terminal).
        shared_classes: only let the model choose among the classes that also
            occur in ``ds`` (for data sets with different vocabularies, e.g.
            a 369-class HASYv2 model on 101-class CROHME).

    Returns:
        A plain-JSON report: ``top1``, ``top5``, ``macro_recall``, per-class
        recall and precision, the confusion matrix and the most confused pairs.
    """
    import torch

    from .batching import check_image_input, loaded_tensors
    from .train import evaluate_logits

    vocab = list(loaded.vocab)
    index = {v: i for i, v in enumerate(vocab)}
    names = np.asarray(ds.vocab, dtype=object)[ds.labels] if len(ds) else np.zeros(0, dtype=object)
    mapped = np.array([index.get(n, -1) for n in ds.vocab], dtype=np.int64)[ds.labels] if len(ds) else np.zeros(0, np.int64)
    unknown = sorted(set(names[mapped < 0]))
    if len(ds) == 0:
        raise ValueError(f"{ds.name} has no samples to evaluate")
    check_image_input(ds, loaded.input_kind, loaded.render, loaded.name)
    data = loaded_tensors(ds, loaded, device=device)
    logits = evaluate_logits(loaded.model.to(device), data, loaded.input_kind, loaded.render, batch_size, None, progress)
    labels = torch.from_numpy(mapped)
    known = labels >= 0
    shared = sorted(set(vocab) & set(ds.vocab))
    if shared_classes:
        if not shared:
            raise ValueError(f"{loaded.name} and {ds.name} share no class names; nothing to restrict to")
        allowed = torch.zeros(len(vocab), dtype=torch.bool)
        allowed[[index[c] for c in shared]] = True
        logits = logits.masked_fill(~allowed, float("-inf"))  # (N, C): the model never picks a class absent from ds
    # samples of unknown classes can never be right
    hit1 = (logits.argmax(1) == labels) & known
    top5 = logits.topk(min(5, logits.shape[1]), 1).indices
    hit5 = (top5 == labels.unsqueeze(1)).any(1) & known
    n_hit1, n_hit5, n_known = int(hit1.sum()), int(hit5.sum()), int(known.sum())  # exact counts
    acc = {"top1": n_hit1 / len(ds), "top5": n_hit5 / len(ds)}
    acc["top1_known"] = n_hit1 / n_known if n_known else float("nan")
    acc["top5_known"] = n_hit5 / n_known if n_known else float("nan")
    pred = logits.argmax(1).numpy()
    lab = labels.numpy()
    cm = confusion_matrix(lab[known.numpy()], pred[known.numpy()], len(vocab))
    support = cm.sum(1)
    recall = np.divide(np.diag(cm), support, out=np.full(len(vocab), np.nan), where=support > 0)
    precision_den = cm.sum(0)
    precision = np.divide(np.diag(cm), precision_den, out=np.full(len(vocab), np.nan), where=precision_den > 0)
    per_class = [
        {
            "label": vocab[i],
            "support": int(support[i]),
            "recall": None if np.isnan(recall[i]) else float(recall[i]),
            "precision": None if np.isnan(precision[i]) else float(precision[i]),
        }
        for i in range(len(vocab))
        if support[i] > 0
    ]
    loss = float(torch.nn.functional.cross_entropy(logits[known], labels[known])) if bool(known.any()) else float("nan")
    return {
        "model": loaded.name,
        "dataset": ds.name,
        "synthetic": bool(ds.synthetic),
        "samples": int(len(ds)),
        "unknown_label_samples": int((~known).sum()),
        "unknown_labels": unknown,
        "shared_classes": len(shared),
        "restricted_to_shared_classes": bool(shared_classes),
        **acc,
        "loss": loss,
        "macro_recall": float(np.nanmean(recall)) if np.isfinite(recall).any() else float("nan"),
        "per_class": per_class,
        "most_confused": most_confused(cm, vocab, 20),
        "confusion": cm.tolist(),
        "vocab": vocab,
    }


def _plot_confusion(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    cm = np.asarray(report["confusion"], dtype=np.float64)
    vocab = report["vocab"]
    keep = np.flatnonzero(cm.sum(1) + cm.sum(0) > 0)
    cm = cm[np.ix_(keep, keep)]
    rate = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    n = len(keep)
    size = max(6.0, min(0.16 * n + 2, 22.0))
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(np.sqrt(rate), cmap="magma_r", vmin=0, vmax=1)
    ax.set_xticks(range(n), [vocab[i] for i in keep], rotation=90, fontsize=max(4, 9 - n // 25))
    ax.set_yticks(range(n), [vocab[i] for i in keep], fontsize=max(4, 9 - n // 25))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(
        f"{report['model']} on {Path(str(report['dataset'])).name}: top-1 {report['top1']:.4f}, "
        f"top-5 {report['top5']:.4f} (colour: sqrt of row rate)"
    )
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    _save_fig(fig, path)


def _plot_curves(history: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.plot(epochs, [h["train_loss"] for h in history], label="train loss (augmented, smoothed labels)")
    a.plot(epochs, [h["val_loss"] for h in history], label="val loss")
    a.set_xlabel("epoch")
    a.legend(fontsize=8)
    b.plot(epochs, [h["val_top1"] for h in history], label="val top-1")
    b.plot(epochs, [h["val_top5"] for h in history], label="val top-5")
    b.plot(epochs, [h["train_top1"] for h in history], label="train top-1 (augmented)", alpha=0.6)
    b.set_xlabel("epoch")
    b.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    _save_fig(fig, path)


def _save_fig(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format=path.suffix.lstrip(".") or "png", dpi=110)
    plt.close(fig)


def write_report(report: dict, out_dir, history: list[dict] | None = None) -> dict[str, Path]:
    """Write ``metrics.json``, ``confusion.png`` and (with history) ``curves.png`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": out / "metrics.json", "confusion": out / "confusion.png"}
    with atomic_write(paths["metrics"], "w") as fh:
        json.dump(report, fh, indent=1)
    _plot_confusion(report, paths["confusion"])
    if history:
        paths["curves"] = out / "curves.png"
        _plot_curves(history, paths["curves"], f"{report['model']}: learning curves")
    return paths


def format_report(report: dict, top: int = 20) -> str:
    """A human-readable summary: headline metrics, the worst classes, the top confusions."""
    lines = [
        f"{report['model']} on {report['dataset']}"
        + (" (SYNTHETIC)" if report.get("synthetic") else "")
        + f": {report['samples']} samples",
        f"  top-1 {report['top1']:.4f}   top-5 {report['top5']:.4f}   macro recall {report['macro_recall']:.4f}",
    ]
    if report["unknown_label_samples"]:
        lines.append(
            f"  {report['unknown_label_samples']} samples have labels the model does not know "
            f"(counted as errors): {report['unknown_labels'][:10]}"
        )
        lines.append(
            f"  on the {report['samples'] - report['unknown_label_samples']} samples of classes it knows: "
            f"top-1 {report['top1_known']:.4f}   top-5 {report['top5_known']:.4f}"
        )
    if report.get("restricted_to_shared_classes"):
        lines.append(f"  choices restricted to the {report['shared_classes']} classes the model and the data share")
    worst = sorted((c for c in report["per_class"] if c["recall"] is not None), key=lambda c: c["recall"])[:top]
    lines.append(f"  lowest recall ({len(worst)} of {len(report['per_class'])} classes):")
    lines += [f"    {c['label']:>14s}  recall {c['recall']:.3f}  support {c['support']}" for c in worst]
    lines.append("  most confused (true -> predicted):")
    lines += [
        f"    {c['true']:>14s} -> {c['predicted']:<14s} {c['count']:5d}  ({c['rate']:.1%} of the class)"
        for c in report["most_confused"][:top]
    ]
    return "\n".join(lines)
