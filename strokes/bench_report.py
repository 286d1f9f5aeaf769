"""The report of a ``strokes bench`` run: summary table, verdict, charts, files.

:func:`summarize` aggregates the cells of each model (mean and sample
standard deviation over seeds/folds); :func:`verdict` compares the best
sequence model with the best image model (and fusion with both); :func:`write`
writes ``results.json``, ``results.csv`` (one row per model), ``cells.csv``
(one row per model and seed/fold), ``report.md`` and the PNG charts, each
atomically.

The verdict knows what it compares. Every cell carries its learning curve
(val top-1 and loss per epoch, with cumulative training seconds), and
:func:`converged` decides from it whether the model had stopped improving
(val top-1 gained less than ``CONVERGED_GAIN`` over its last
``CONVERGED_WINDOW`` epochs). The verdict then gives two answers:

* **at convergence**: the test scores, but only when every model of the
  kinds compared converged; otherwise it says the comparison is of training
  speed, not of representations, and names no representation winner;
* **at equal compute**: val top-1 read off the curves at fixed training
  times (:func:`equal_compute`), which is a statement about how fast each
  model learns on this machine.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from pathlib import Path

import numpy as np

from ._util import atomic_write

log = logging.getLogger(__name__)

__all__ = [
    "summarize",
    "verdict",
    "converged",
    "equal_compute",
    "markdown_table",
    "fold_table",
    "render_report",
    "write",
    "CHARTS",
    "CONVERGED_WINDOW",
    "CONVERGED_GAIN",
]

CHARTS = {
    "data_efficiency": "data_efficiency.png",
    "latency": "accuracy_vs_latency.png",
    "curves": "learning_curves.png",
    "per_class": "per_class_sequence_vs_image.png",
    "probes": "probes.png",
}

#: A cell has converged when the best val top-1 of its last CONVERGED_WINDOW epochs
#: beats the best before them by less than CONVERGED_GAIN (0.3 points).
CONVERGED_WINDOW = 3
CONVERGED_GAIN = 0.003

_KIND_LABEL = {"sequence": "sequence", "image": "image", "both": "both (fusion)"}
_KIND_COLOR = {"sequence": "tab:blue", "image": "tab:orange", "both": "tab:green"}


def _mean_std(values) -> tuple[float | None, float | None]:
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return None, None
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else None)


def full_data(results: dict) -> dict:
    """``results`` with only the cells trained on their whole training split.

    The summary, verdict, curves and probes compare models at full data; the
    cells of smaller training fractions feed :func:`data_efficiency` only.
    """
    return {**results, "cells": [c for c in results["cells"] if c.get("train_fraction", 1.0) >= 1.0]}


def data_efficiency(results: dict) -> dict | None:
    """Test top-1 per model and training fraction (mean over seeds), with the training samples used.

    None when the run had one fraction only.
    """
    fractions = sorted({c.get("train_fraction", 1.0) for c in results["cells"]})
    if len(fractions) < 2:
        return None
    rows = []
    for model in results["config"]["models"]:
        cells = [c for c in results["cells"] if c["model"] == model]
        if not cells:
            continue
        points = []
        for f in fractions:
            fc = [c for c in cells if c.get("train_fraction", 1.0) == f]
            if fc:
                points.append(
                    {
                        "fraction": f,
                        "train_samples": float(np.mean([c["split_sizes"]["train"] for c in fc])),
                        "top1": float(np.mean([c["test"]["top1"] for c in fc])),
                        "top1_std": float(np.std([c["test"]["top1"] for c in fc], ddof=1)) if len(fc) > 1 else None,
                        "cells": len(fc),
                        "epochs": float(np.mean([c["epochs_run"] for c in fc])),
                        "converged": all(converged(c.get("history") or [])["converged"] for c in fc),
                    }
                )
        rows.append({"model": model, "representation": cells[0]["representation"], "points": points})
    return {"fractions": fractions, "rows": rows}


def summarize(results: dict) -> list[dict]:
    """One row per model, in the run's model order: means (and std over cells) of every measure."""
    results = full_data(results)
    rows = []
    for model in results["config"]["models"]:
        cells = [c for c in results["cells"] if c["model"] == model]
        if not cells:
            continue
        row = {"model": model, "representation": cells[0]["representation"], "params": cells[0]["params"], "cells": len(cells)}
        for key, get in {
            "top1": lambda c: c["test"]["top1"],
            "top5": lambda c: c["test"]["top5"],
            "macro_recall": lambda c: c["test"]["macro_recall"],
            "epochs_run": lambda c: c["epochs_run"],
            "train_seconds": lambda c: c["train_seconds"],
            "train_samples_per_s": lambda c: c["train_samples_per_s"],
            "train_data_fraction": lambda c: c["train_data_fraction"],
            "infer_samples_per_s": lambda c: c["inference"]["samples_per_s"],
            "latency_p50_ms": lambda c: c["latency"]["p50_ms"],
            "latency_p95_ms": lambda c: c["latency"]["p95_ms"],
        }.items():
            row[f"{key}_mean"], row[f"{key}_std"] = _mean_std(get(c) for c in cells)
        top1 = [c["test"]["top1"] for c in cells]
        row["top1_min"], row["top1_max"] = min(top1), max(top1)
        conv = [converged(c.get("history") or []) for c in cells]
        row["converged_cells"] = sum(bool(c["converged"]) for c in conv)
        row["converged"] = row["converged_cells"] == len(cells)
        gains = [c["gain"] for c in conv if c["gain"] is not None]
        row["last_gain"] = max(gains) if gains else None  # the worst cell's gain over its last epochs
        row["peak_rss_mb"] = max(c["memory"]["train_peak_rss_mb"] for c in cells)
        cuda = [c["memory"].get("cuda_train_peak_mb") for c in cells if c["memory"].get("cuda_train_peak_mb") is not None]
        row["cuda_peak_mb"] = max(cuda) if cuda else None
        rows.append(row)
    return rows


def converged(history: list[dict], window: int = CONVERGED_WINDOW, tol: float = CONVERGED_GAIN) -> dict:
    """Whether a learning curve had stopped rising.

    Args:
        history: the cell's per-epoch rows, each with ``val_top1``.
        window: the last epochs looked at.
        tol: the largest gain (a fraction, 0.003 = 0.3 points) that still counts as converged.

    Returns:
        ``{"converged": bool, "gain": float | None, "epochs": int, "reason": str}``;
        ``gain`` is the best val top-1 of the last ``window`` epochs minus the best
        before them. A curve with at most ``window`` epochs has no ``gain`` and has
        not converged (too short to tell).
    """
    vals = [h["val_top1"] for h in history if h.get("val_top1") is not None]
    if len(vals) <= window:
        return {"converged": False, "gain": None, "epochs": len(vals), "reason": f"only {len(vals)} epoch(s): too short to tell"}
    gain = max(vals[-window:]) - max(vals[:-window])
    ok = gain < tol
    why = (
        f"val top-1 {'gained only' if ok else 'still gained'} {100 * gain:+.2f} pt over its last {window} epochs "
        f"({'<' if ok else '≥'} {100 * tol:.1f})"
    )
    return {"converged": ok, "gain": gain, "epochs": len(vals), "reason": why}


def _mean_curve(cells: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(epochs, cumulative seconds, val top-1), averaged over cells epoch by epoch (up to the shortest)."""
    hists = [[h for h in c.get("history") or [] if h.get("val_top1") is not None] for c in cells]
    hists = [h for h in hists if h]
    if not hists:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    n = min(len(h) for h in hists)
    ep = np.arange(1, n + 1, dtype=np.float64)
    secs = np.mean([_cum_seconds(h)[:n] for h in hists], axis=0)
    top1 = np.mean([[r["val_top1"] for r in h[:n]] for h in hists], axis=0)
    return ep, secs, top1


def _cum_seconds(hist: list[dict]) -> np.ndarray:
    if all("cum_train_seconds" in h for h in hist):
        return np.asarray([h["cum_train_seconds"] for h in hist], dtype=np.float64)
    return np.cumsum([h.get("train_seconds", 0.0) for h in hist])


def equal_compute(results: dict, summary: list[dict], n_points: int = 3) -> dict | None:
    """Val top-1 of every model read off its learning curve at the same training times.

    The times are ``1/n, 2/n, ..., 1`` of the shortest model's total training
    time when every model has finished an epoch by the first of them. When some
    model's first epoch takes longer (a fast small model beside slow large
    ones), they are instead ``n`` geometrically spaced times from the latest
    first epoch to the median total training time, so that the large models
    are read too. The reading at time ``t`` is the mean over seeds of the last
    validation at or before ``t``, i.e. what that model could have delivered
    after ``t`` seconds of training on this machine (with its own schedule,
    which had not decayed yet: a schedule fitted to ``t`` would score somewhat
    higher); a model that had finished before ``t`` gives its final reading,
    flagged in ``finished``.

    Returns:
        ``{"times": [...], "rows": [{"model", "representation", "top1": [...], "finished": [...]}], "best": [...]}``,
        or None when no cell has a curve.
    """
    curves = {}
    for r in summary:
        cells = [c for c in results["cells"] if c["model"] == r["model"]]
        ep, secs, top1 = _mean_curve(cells)
        if len(ep):
            curves[r["model"]] = (r["representation"], secs, top1)
    if not curves:
        return None
    horizon = min(secs[-1] for _, secs, _ in curves.values())
    times = [horizon * (i + 1) / n_points for i in range(n_points)]
    first = max(secs[0] for _, secs, _ in curves.values())
    if first > times[0] * (1 + 1e-9):  # some model has no reading yet: span the large models' runs instead
        hi = max(first, float(np.median([secs[-1] for _, secs, _ in curves.values()])))
        times = [float(t) for t in np.geomspace(first, hi, n_points)] if hi > first * (1 + 1e-9) else [first]
    rows = []
    for model, (kind, secs, top1) in curves.items():
        reads = []
        for t in times:
            done = np.flatnonzero(secs <= t * (1 + 1e-9))
            reads.append(float(top1[done[-1]]) if len(done) else None)
        finished = [bool(t > secs[-1] * (1 + 1e-9)) for t in times]
        rows.append({"model": model, "representation": kind, "top1": reads, "finished": finished})
    best = []
    for i in range(len(times)):
        have = [r for r in rows if r["top1"][i] is not None]
        best.append(max(have, key=lambda r: r["top1"][i])["model"] if have else None)
    return {"times": times, "rows": rows, "best": best}


def probe_summary(results: dict, summary: list[dict]) -> dict | None:
    """Per probe and model: mean test top-1 under the probe and its drop against clean ink (points).

    The drop is taken per cell (same model, same split: probe top-1 minus clean top-1) and
    averaged over the cells; None when no cell has probes.
    """
    names = []
    for c in results["cells"]:
        for n in c.get("probes") or {}:
            if n not in names:
                names.append(n)
    if not names:
        return None
    from .probes import PROBES

    order = [n for n in PROBES if n in names] + [n for n in names if n not in PROBES]
    rows = []
    for name in order:
        row = {"probe": name, "informational": bool(PROBES.get(name) and PROBES[name].informational), "models": {}}
        for r in summary:
            cells = [c for c in results["cells"] if c["model"] == r["model"] and name in (c.get("probes") or {})]
            if cells:
                top1 = float(np.mean([c["probes"][name]["top1"] for c in cells]))
                drop = float(np.mean([c["probes"][name]["top1"] - c["test"]["top1"] for c in cells]))
                row["models"][r["model"]] = {"top1": top1, "drop": drop}
        rows.append(row)
    return {"models": [r["model"] for r in summary], "rows": rows}


def _probe_verdict(probes: dict, summary: list[dict]) -> str | None:
    seq, img = _best(summary, "sequence"), _best(summary, "image")
    if not probes or not seq or not img:
        return None
    real = [r for r in probes["rows"] if not r["informational"] and seq["model"] in r["models"] and img["model"] in r["models"]]
    if not real:
        return None
    img_better = [r["probe"] for r in real if r["models"][img["model"]]["drop"] > r["models"][seq["model"]]["drop"]]
    seq_better = [r["probe"] for r in real if r["models"][seq["model"]]["drop"] > r["models"][img["model"]]["drop"]]
    worst = {m: min(real, key=lambda r: r["models"][m]["drop"]) for m in (seq["model"], img["model"])}
    return (
        f"**Robustness** (perturbed raw ink; flip-y aside): `{img['model']}` (image) loses less than `{seq['model']}` "
        f"(sequence) on {len(img_better)} of {len(real)} probes"
        + (f" ({', '.join(img_better)})" if img_better else "")
        + f", the sequence model on {len(seq_better)}" + (f" ({', '.join(seq_better)})" if seq_better else "")
        + ". Worst: "
        + "; ".join(f"`{m}` {100 * w['models'][m]['drop']:+.2f} pt under {w['probe']}" for m, w in worst.items())
        + "."
    )


def _pct(mean, std) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    return f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "")


def _num(x, fmt="{:.0f}") -> str:
    return "–" if x is None else fmt.format(x)


def _range(row) -> str:
    if row.get("top1_min") is None:
        return "–"
    return f"{100 * row['top1_min']:.2f}–{100 * row['top1_max']:.2f}"


def fold_table(results: dict) -> str | None:
    """Test top-1 per model and split (mean over seeds), for runs over folds; None for other splits."""
    results = full_data(results)
    ids = []
    for c in results["cells"]:
        fold = c["split_id"].split("-", 1)[1] if "-" in c["split_id"] else None
        if fold is None:
            return None
        if fold not in ids:
            ids.append(fold)
    if not ids:
        return None
    lines = ["| model | " + " | ".join(ids) + " | mean | min | max |", "|---|" + "--:|" * (len(ids) + 3)]
    for model in results["config"]["models"]:
        cells = [c for c in results["cells"] if c["model"] == model]
        if not cells:
            continue
        per = [np.mean([c["test"]["top1"] for c in cells if c["split_id"].endswith("-" + f)] or [np.nan]) for f in ids]
        vals = np.asarray(per, dtype=np.float64)
        lines.append(
            f"| {model} | " + " | ".join("–" if np.isnan(v) else f"{100 * v:.2f}" for v in vals)
            + f" | {100 * np.nanmean(vals):.2f} | {100 * np.nanmin(vals):.2f} | {100 * np.nanmax(vals):.2f} |"
        )
    return "\n".join(lines)


def markdown_table(summary: list[dict]) -> str:
    """The summary as a markdown table (also printed by the CLI)."""
    head = (
        "| model | representation | params | epochs | train s | train samples/s | data-prep share | "
        "top-1 % | top-1 min–max % | top-5 % | macro recall % | infer samples/s | latency p50 ms | p95 ms | peak RSS MB |"
    )
    lines = [head, "|" + "---|" * 2 + "--:|" * 13]
    for r in summary:
        lines.append(
            f"| {r['model']} | {r['representation']} | {r['params']:,} | {_num(r['epochs_run_mean'], '{:.1f}')} "
            f"| {_num(r['train_seconds_mean'])} | {_num(r['train_samples_per_s_mean'])} "
            f"| {_num(r['train_data_fraction_mean'] and 100 * r['train_data_fraction_mean'], '{:.0f}%')} "
            f"| {_pct(r['top1_mean'], r['top1_std'])} | {_range(r)} | {_pct(r['top5_mean'], r['top5_std'])} "
            f"| {_pct(r['macro_recall_mean'], r['macro_recall_std'])} | {_num(r['infer_samples_per_s_mean'])} "
            f"| {_num(r['latency_p50_ms_mean'], '{:.2f}')} | {_num(r['latency_p95_ms_mean'], '{:.2f}')} "
            f"| {_num(r['peak_rss_mb'])} |"
        )
    return "\n".join(lines)


def _best(summary, kind):
    rows = [r for r in summary if r["representation"] == kind and r["top1_mean"] is not None]
    return max(rows, key=lambda r: (r["top1_mean"], r["top5_mean"] or 0)) if rows else None


def _paired(results, a: str, b: str) -> list[float]:
    """Per split (seed/fold) top-1 differences a - b, over the splits both models ran."""
    by = {(c["model"], c["split_id"]): c["test"]["top1"] for c in results["cells"]}
    ids = sorted({c["split_id"] for c in results["cells"]})
    return [by[(a, s)] - by[(b, s)] for s in ids if (a, s) in by and (b, s) in by]


def _compare(results, a: dict, b: dict, what_a: str, what_b: str) -> str:
    """One sentence: which of a and b is ahead on top-1, and whether that is beyond the seed spread."""
    if a["top1_mean"] < b["top1_mean"]:
        a, b, what_a, what_b = b, a, what_b, what_a
    gap = 100 * (a["top1_mean"] - b["top1_mean"])
    d = _paired(results, a["model"], b["model"])
    wins = sum(x > 0 for x in d)
    head = (
        f"{what_a[0].upper() + what_a[1:]} `{a['model']}` {_pct(a['top1_mean'], a['top1_std'])}% vs {what_b} `{b['model']}` "
        f"{_pct(b['top1_mean'], b['top1_std'])}% top-1: a gap of {gap:.2f} points"
    )
    if a["top1_std"] is None or b["top1_std"] is None:
        return head + "; with one seed per model the spread is unknown, so this gap is indicative only."
    spread = 100 * (a["top1_std"] + b["top1_std"])
    paired = f"; `{a['model']}` wins {wins} of {len(d)} paired splits"
    if gap > spread:
        return head + f", larger than the spread over seeds ({spread:.2f} points, the sum of the two std){paired}. **{what_a.capitalize()} is ahead.**"
    return head + f", not larger than the spread over seeds ({spread:.2f} points){paired}. **They are within noise.**"


def _not_converged_note(rows: list[dict]) -> str:
    return ", ".join(
        f"`{r['model']}` (+{100 * r['last_gain']:.2f} pt over its last {CONVERGED_WINDOW} epochs)"
        if r.get("last_gain") is not None
        else f"`{r['model']}` (too few epochs to tell)"
        for r in rows
    )


def verdict(results: dict, summary: list[dict]) -> list[str]:
    """Short automatic findings: at convergence (only from converged models), at equal compute, speed."""
    seq, img, both = _best(summary, "sequence"), _best(summary, "image"), _best(summary, "both")
    out = []
    unconverged = [r for r in summary if not r.get("converged")]
    if summary:
        conv = [f"`{r['model']}`" for r in summary if r.get("converged")]
        out.append(
            f"**Convergence** (val top-1 gained < {100 * CONVERGED_GAIN:.1f} pt over the last {CONVERGED_WINDOW} epochs, every seed): "
            + (f"converged: {', '.join(conv)}" if conv else "no model converged")
            + (f"; **not converged**: {_not_converged_note(unconverged)}." if unconverged else ".")
        )

    def settled(kinds) -> list[dict]:
        return [r for r in summary if r["representation"] in kinds and not r.get("converged")]

    if seq and img:
        pending = settled(("sequence", "image"))
        if not pending:
            out.append("**Accuracy at convergence.** " + _compare(results, img, seq, "the image path", "the sequence path"))
        else:
            out.append(
                f"**Accuracy at convergence: not settled.** {_not_converged_note(pending)} had not converged, so the test "
                "scores compare how far each model got in its budget: training speed on this machine, not the "
                "representations. No representation winner is named; give more epochs."
            )
    elif summary:
        kinds = sorted({r["representation"] for r in summary})
        out.append(f"Only {', '.join(kinds)} models ran, so there is no sequence-vs-image comparison.")
    eq = results.get("equal_compute") or equal_compute(results, summary)
    if eq and len(eq["rows"]) > 1:
        t = eq["times"][-1]
        rows = sorted(eq["rows"], key=lambda r: -(r["top1"][-1] or 0))
        reads = ", ".join(
            f"`{r['model']}` {100 * r['top1'][-1]:.2f}%" + (" (its whole run, finished earlier)" if (r.get("finished") or [False])[-1] else "")
            for r in rows
            if r["top1"][-1] is not None
        )
        out.append(
            f"**At equal compute** ({t:.0f} s of training each, val top-1 read off the curves): {reads}. "
            "This ranks how fast each model learns on this machine, not what its representation can reach."
        )
    robust = _probe_verdict(results.get("probes") or probe_summary(results, summary), summary)
    if robust:
        out.append(robust)
    if seq and img:
        fast, slow = sorted([seq, img], key=lambda r: r["latency_p50_ms_mean"])
        out.append(
            f"**Speed.** Single-sample latency (p50): `{fast['model']}` {fast['latency_p50_ms_mean']:.2f} ms vs "
            f"`{slow['model']}` {slow['latency_p50_ms_mean']:.2f} ms ({slow['latency_p50_ms_mean'] / fast['latency_p50_ms_mean']:.1f}x). "
            f"Training throughput: `{img['model']}` {img['train_samples_per_s_mean']:.0f} vs `{seq['model']}` "
            f"{seq['train_samples_per_s_mean']:.0f} samples/s; batched inference: {img['infer_samples_per_s_mean']:.0f} vs "
            f"{seq['infer_samples_per_s_mean']:.0f} samples/s."
        )
    if both:
        singles = [r for r in (seq, img) if r]
        if singles:
            best_single = max(singles, key=lambda r: r["top1_mean"])
            pending = settled(("sequence", "image", "both"))
            if not pending:
                out.append("**Fusion at convergence.** " + _compare(results, both, best_single, "fusion", "the best single representation"))
            else:
                out.append(
                    f"**Fusion at convergence: not settled** ({_not_converged_note(pending)} had not converged); "
                    f"fusion `{both['model']}` {_pct(both['top1_mean'], both['top1_std'])}% vs `{best_single['model']}` "
                    f"{_pct(best_single['top1_mean'], best_single['top1_std'])}% top-1 within this budget."
                )
    done = [r for r in summary if r.get("converged")]
    top = max(done, key=lambda r: r["top1_mean"]) if done else None
    if top:
        out.append(f"**Most accurate converged model:** `{top['model']}` ({top['representation']}), {_pct(top['top1_mean'], top['top1_std'])}% top-1.")
    fastest = min(summary, key=lambda r: r["latency_p50_ms_mean"]) if summary else None
    if fastest:
        out.append(f"**Lowest latency:** `{fastest['model']}`, {fastest['latency_p50_ms_mean']:.2f} ms p50.")
    bound = [r["model"] for r in summary if (r["train_data_fraction_mean"] or 0) > 0.5]
    if bound:
        out.append(
            f"**Data-bound training:** {', '.join(f'`{m}`' for m in bound)} spent more than half of each step preparing "
            "data (gather, augment, pad, render); a faster pipeline would speed them up more than a faster model."
        )
    return out


# ------------------------------------------------------------- per class
def _pooled_recall(results, model) -> tuple[np.ndarray, np.ndarray, list[str]]:
    cells = [c for c in results["cells"] if c["model"] == model]
    cm = np.sum([np.asarray(c["confusion"], dtype=np.int64) for c in cells], axis=0)
    support = cm.sum(1)
    recall = np.divide(np.diag(cm), support, out=np.full(len(support), np.nan), where=support > 0)
    return recall, cm, cells[0]["vocab"]


def per_class_difference(results, seq_model: str, img_model: str, n: int = 12) -> dict:
    """Per-class recall (pooled over seeds) of the image model minus the sequence model."""
    from .training.evaluate import most_confused

    r_seq, cm_seq, vocab = _pooled_recall(results, seq_model)
    r_img, cm_img, _ = _pooled_recall(results, img_model)
    support = cm_seq.sum(1)
    ok = support > 0
    diff = np.where(ok, r_img - r_seq, np.nan)
    order = np.argsort(np.where(ok, diff, 0.0), kind="stable")
    rows = lambda idx: [  # noqa: E731
        {"label": vocab[i], "support": int(support[i]), "sequence": float(r_seq[i]), "image": float(r_img[i]), "diff": float(diff[i])}
        for i in idx
        if ok[i] and diff[i] != 0
    ]
    return {
        "sequence_model": seq_model,
        "image_model": img_model,
        "sequence_better": rows(order[:n]),
        "image_better": rows(order[::-1][:n]),
        "sequence_confusions": most_confused(cm_seq, vocab, 10),
        "image_confusions": most_confused(cm_img, vocab, 10),
        "classes_compared": int(ok.sum()),
    }


# ----------------------------------------------------------------- charts
def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    with atomic_write(path, "wb") as fh:
        fh.write(buf.getvalue())


def _legend_kinds(ax, kinds):
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", ls="", color=_KIND_COLOR[k], label=_KIND_LABEL[k]) for k in kinds]
    ax.legend(handles=handles, loc="lower right", fontsize=8)


def chart_latency(summary, path: Path, title: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for r in summary:
        x, y = r["latency_p50_ms_mean"], 100 * r["top1_mean"]
        ax.errorbar(x, y, yerr=None if r["top1_std"] is None else 100 * r["top1_std"], fmt="o", color=_KIND_COLOR[r["representation"]], capsize=3)
        ax.annotate(r["model"], (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("single-sample latency through recognize(), p50 (ms, log scale)")
    ax.set_ylabel("test top-1 (%), mean ± std over seeds")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    _legend_kinds(ax, sorted({r["representation"] for r in summary}))
    _save(fig, path)


def chart_curves(results, summary, path: Path, title: str) -> None:
    """Val top-1 against epochs (left) and against cumulative training seconds (right),
    one line per model (mean over seeds), thin lines for the single seeds."""
    plt = _plt()
    fig, (ax_e, ax_t) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    cmap = plt.get_cmap("tab10")
    for i, r in enumerate(summary):
        color = cmap(i % 10)
        cells = [x for x in results["cells"] if x["model"] == r["model"]]
        for c in cells:
            hist = [h for h in c.get("history") or [] if h.get("val_top1") is not None]
            if len(cells) > 1 and hist:
                v = [100 * h["val_top1"] for h in hist]
                ax_e.plot(np.arange(1, len(hist) + 1), v, "-", color=color, alpha=0.25, lw=0.8)
                ax_t.plot(_cum_seconds(hist), v, "-", color=color, alpha=0.25, lw=0.8)
        ep, secs, top1 = _mean_curve(cells)
        if len(ep):
            label = f"{r['model']} ({r['representation']})" + ("" if r.get("converged") else ", not converged")
            ax_e.plot(ep, 100 * top1, "-", marker=".", color=color, lw=1.6, label=label)
            ax_t.plot(secs, 100 * top1, "-", marker=".", color=color, lw=1.6)
    ax_e.set_xlabel("epoch")
    ax_t.set_xlabel("cumulative training time (s, validation excluded)")
    ax_e.set_ylabel("validation top-1 (%), mean over seeds")
    for ax in (ax_e, ax_t):
        ax.grid(alpha=0.3)
    if ax_e.get_legend_handles_labels()[0]:  # no full-data cell finished yet: nothing to name
        ax_e.legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=9)
    _save(fig, path)


def chart_data_efficiency(eff: dict, path: Path, title: str) -> None:
    """Test top-1 against training samples (log scale), one line per model."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    seen: dict = {}
    hollow = False
    for r in eff["rows"]:
        x = np.array([p["train_samples"] for p in r["points"]])
        y = np.array([100 * p["top1"] for p in r["points"]])
        done = np.array([p["converged"] for p in r["points"]], bool)
        color = _KIND_COLOR.get(r["representation"])
        nth = seen[r["representation"]] = seen.get(r["representation"], -1) + 1  # models of one kind: other line and marker
        style, marker = ("-", "--", ":", "-.")[nth % 4], "osD^v"[nth % 5]
        ax.plot(x, y, style, marker=marker, color=color, alpha=0.9, label=f"{r['model']} ({r['representation']})")
        ax.plot(x[~done], y[~done], marker, ls="none", color=color, mfc="white")  # hollow over the filled marker
        hollow |= bool((~done).any())
    if hollow:
        ax.plot([], [], "o", ls="none", color="grey", mfc="white", label="hollow: not converged")
    ax.set_xscale("log")
    ticks = sorted({round(p["train_samples"]) for r in eff["rows"] for p in r["points"]})
    ax.set_xticks(ticks, [f"{t:,}" for t in ticks], fontsize=8)  # the subsets' own sizes, not 10^k
    ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.set_xlabel("training samples (nested writer subsets, log scale)")
    ax.set_ylabel("test top-1 (%), mean over seeds")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    _save(fig, path)


def chart_probes(probes: dict, path: Path, title: str) -> None:
    """A heat map of the top-1 drop (points) under each probe, one column per model."""
    plt = _plt()
    rows, models = probes["rows"], probes["models"]
    drops = np.array([[100 * r["models"].get(m, {}).get("drop", np.nan) for m in models] for r in rows])
    fig, ax = plt.subplots(figsize=(1.3 * len(models) + 3, 0.38 * len(rows) + 1.4))
    lim = max(1.0, float(np.nanmax(np.abs(drops)))) if np.isfinite(drops).any() else 1.0
    im = ax.imshow(drops, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    for (i, j), v in np.ndenumerate(drops):
        if np.isfinite(v):
            ax.text(j, i, f"{v:+.1f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(models)), models, fontsize=8)
    ax.set_yticks(range(len(rows)), [r["probe"] + (" (info)" if r["informational"] else "") for r in rows], fontsize=8)
    fig.colorbar(im, ax=ax, label="top-1 change vs clean ink (points)")
    ax.set_title(title, fontsize=9)
    _save(fig, path)


def chart_per_class(diff: dict, path: Path, title: str) -> None:
    plt = _plt()
    rows = diff["image_better"][::-1] + diff["sequence_better"][::-1]
    rows = sorted({r["label"]: r for r in rows}.values(), key=lambda r: r["diff"])
    fig, ax = plt.subplots(figsize=(6.4, max(2.5, 0.22 * len(rows) + 1)))
    if rows:
        y = np.arange(len(rows))
        vals = [100 * r["diff"] for r in rows]
        ax.barh(y, vals, color=[_KIND_COLOR["image"] if v > 0 else _KIND_COLOR["sequence"] for v in vals])
        ax.set_yticks(y, [f"{r['label']} (n={r['support']})" for r in rows], fontsize=7)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel(f"recall of {diff['image_model']} minus {diff['sequence_model']} (points)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, axis="x")
    _save(fig, path)


# ----------------------------------------------------------------- report
def _budget(cfg: dict) -> str:
    parts = []
    if cfg.get("epochs") is not None:
        parts.append(f"{cfg['epochs']} epochs")
        if cfg.get("fraction_epochs"):
            parts[-1] += " (" + ", ".join(f"{e} at training fraction {f}" for f, e in cfg["fraction_epochs"].items()) + ")"
    if cfg.get("time_budget") is not None:
        parts.append(f"{cfg['time_budget']:g} s of training")
    return " or ".join(parts) + " per model and seed, whichever ends first" if len(parts) > 1 else parts[0] + " per model and seed"


def render_report(results: dict, image_prefix: str = "") -> str:
    """``report.md``: what ran, where, the table, the verdict, the charts and per-class findings."""
    cfg, env, data = results["config"], results["environment"], results["data"]
    summary = results.get("summary") or summarize(results)
    eff = data_efficiency(results)  # from the cells, so results saved before points had "converged" are read right
    all_cells = results["cells"]
    results = full_data(results)
    lines = [f"# strokes bench: {data['name']}", ""]
    if data["synthetic"]:
        lines += ["> **SYNTHETIC data** (generated by `strokes.synthetic`, not real handwriting): the numbers show the harness works, not which representation wins on real ink.", ""]
    sizes = results["splits"][0]["sizes"] if results["splits"] else [0, 0, 0]
    lines += [
        f"- **Command:** `{results.get('command') or '(library call)'}`",
        f"- **Data:** {data['name']}: {data['samples']:,} samples, {data['classes']} classes, {data['writers']} writers "
        f"(fingerprint `{data['fingerprint']}`, {data['skipped']} skipped on load).",
        f"- **Split:** `{cfg['split']}`, {len(results['splits'])} split(s) over seeds {cfg['seed']}..{cfg['seed'] + cfg['seeds'] - 1}; "
        f"first split train/val/test = {sizes[0]:,}/{sizes[1]:,}/{sizes[2]:,}. Every model ran on the same splits with the same seeds.",
        f"- **Budget:** {_budget(cfg)}; batch {cfg['batch_size']}, AdamW lr {cfg['lr']:g} (warmup + cosine), "
        + (
            f"augmentation {'on (the same point augmentation for every model)' if cfg['augment'] is True else 'off'}, "
            if isinstance(cfg["augment"], bool)
            else f"augmentation preset `{cfg['augment']}` (the same for every model), "
        )
        + ("early stopping off" if not cfg["patience"] else f"early stopping after {cfg['patience']} epochs")
        + (f", at most {cfg['max_train_samples']:,} training samples" if cfg.get("max_train_samples") else "")
        + ".",
        *(
            [
                "- **Model sizes:** "
                + "; ".join(f"`{m}` " + ", ".join(f"{k}={v}" for k, v in o.items()) for m, o in cfg["model_options"].items())
                + " (other fields at their defaults; parameters in the table)."
            ]
            if cfg.get("model_options")
            else []
        ),
        f"- **Precision:** {cfg.get('precision', 'auto')} (used: "
        + ", ".join(sorted({c.get('precision', 'fp32') for c in results['cells']}))
        + ").",
        f"- **Machine:** {env['device']} ({env['gpu'] or env['cpu']}), {env['cpu_count']} CPU cores, {env['torch_threads']} torch threads, "
        f"torch {env['torch']}, commit `{(env.get('commit') or 'unknown')[:10]}`{' (dirty tree)' if env.get('dirty') else ''}, "
        f"load average {env.get('loadavg_start', ['?'])[0]} at the start and {env.get('loadavg_end', ['?'])[0]} at the end.",
        *(
            [f"- **Distributed:** every cell trained with DistributedDataParallel on {d['world_size']} processes ({d['backend']}), "
             f"{d['rank_batch']} samples per rank and step; measurements on rank 0."]
            if (d := next((c["distributed"] for c in results["cells"] if c.get("distributed")), None))
            else []
        ),
        f"- **Run:** {len(all_cells)} cells, {sum(c.get('cell_seconds', 0.0) for c in all_cells) / 60:.0f} min of "
        f"cell time (training, evaluation and measurements); this invocation took {results['run_seconds']:.0f} s"
        + (f" ({results['cells_reused']} reused from an earlier, interrupted run)" if results.get("cells_reused") else "")
        + ".",
        *(
            [f"- **Not finished yet:** {len(results['pending_cells'])} cell(s) still to run "
             f"({', '.join(f'`{c}`' for c in results['pending_cells'])}); this report covers the finished ones. "
             "The same command again (without `--report-only`) runs them."]
            if results.get("pending_cells")
            else []
        ),
        "",
        "## Results",
        "",
        markdown_table(summary),
        "",
        "Mean ± sample standard deviation over seeds (and folds), and the lowest and highest cell. *train s*: wall time of the training loop, validation "
        "excluded; *data-prep share*: the part of each training step spent gathering, augmenting, padding and rendering "
        "the batch; *infer samples/s*: batched test-set inference (normalize, prepare, forward); *latency*: one ink at a "
        f"time through the `recognize()` path after {cfg['latency_warmup']} untimed warm-up calls; *peak RSS*: the process "
        "during training (it includes the loaded dataset).",
        "",
    ]
    if results.get("skipped_models"):
        lines += ["**Not run:** " + "; ".join(f"`{m}` ({why})" for m, why in results["skipped_models"].items()) + ".", ""]
    folds = fold_table(results)
    if folds:
        lines += [
            "## Per fold",
            "",
            "Test top-1 % per fold (mean over seeds), then the mean, lowest and highest fold"
            + (
                " (HASYv2's official classification folds, reported as in its paper)."
                if cfg["split"].startswith("hasy-folds")
                else " (leave one collection out: each column is the collection held out for testing, the model "
                "trained on the others; a device or recording setup it never saw)."
                if cfg["split"] == "collection"
                else "."
            ),
            "",
            folds,
            "",
        ]
    lines += ["## Verdict", ""]
    lines += [f"- {v}" for v in (results.get("verdict") or verdict(results, summary))]
    lines += [
        "",
        "## Charts",
        "",
        f"![accuracy vs latency]({image_prefix}{CHARTS['latency']})",
        "",
        f"![learning curves: val top-1 against epochs and training seconds]({image_prefix}{CHARTS['curves']})",
        "",
    ]
    eq = results.get("equal_compute") or equal_compute(results, summary)
    if eq:
        lines += [
            "## Equal compute",
            "",
            "Validation top-1 % read off each model's learning curve (mean over seeds) after the same training time: "
            "how fast each model learns on this machine. Each model ran its own schedule, not yet decayed at the "
            "earlier times. † : the model had finished training before that time; its final reading.",
            "",
            "| model | representation | " + " | ".join(f"{t:.0f} s" for t in eq["times"]) + " |",
            "|---|---|" + "--:|" * len(eq["times"]),
        ]
        for r in eq["rows"]:
            done = r.get("finished") or [False] * len(r["top1"])
            cells = [
                "–" if v is None else (f"**{100 * v:.2f}**" if eq["best"][i] == r["model"] else f"{100 * v:.2f}") + (" †" if done[i] and v is not None else "")
                for i, v in enumerate(r["top1"])
            ]
            lines.append(f"| {r['model']} | {r['representation']} | " + " | ".join(cells) + " |")
        lines.append("")
    probes = results.get("probes") or probe_summary(results, summary)
    if probes:
        lines += [
            "## Robustness probes",
            "",
            "Test top-1 % with the raw ink of the test split perturbed before normalization (see `strokes.probes`), and "
            "the change against clean ink in points (per cell, then the mean over seeds). `flip-y` is informational: it "
            "is a client sending y up, and the fix is the client's (or `UnitSquare(flip_y=True)`).",
            "",
            "| probe | " + " | ".join(probes["models"]) + " |",
            "|---|" + "--:|" * len(probes["models"]),
        ]
        for r in probes["rows"]:
            cells = [
                f"{100 * r['models'][m]['top1']:.2f} ({100 * r['models'][m]['drop']:+.2f})" if m in r["models"] else "–"
                for m in probes["models"]
            ]
            lines.append(f"| {r['probe']}{' (informational)' if r['informational'] else ''} | " + " | ".join(cells) + " |")
        lines += ["", f"![top-1 change under each probe]({image_prefix}{CHARTS['probes']})", ""]
    if eff:
        lines += [
            "## Data efficiency",
            "",
            "Test top-1 % (mean over seeds) trained on nested writer subsets of each training split (each holds the "
            "smaller ones; validation and test unchanged), with the training samples used.",
            "",
            "| model | " + " | ".join(f"{f:g}" for f in eff["fractions"]) + " |",
            "|---|" + "--:|" * len(eff["fractions"]),
        ]
        for r in eff["rows"]:
            by = {p["fraction"]: p for p in r["points"]}
            lines.append(
                f"| {r['model']} | "
                + " | ".join(
                    f"{100 * by[f]['top1']:.2f}{'' if by[f]['converged'] else '*'} (n={by[f]['train_samples']:,.0f})" if f in by else "–"
                    for f in eff["fractions"]
                )
                + " |"
            )
        epochs = {f: sorted({round(p["epochs"], 1) for r in eff["rows"] for p in r["points"] if p["fraction"] == f}) for f in eff["fractions"]}
        lines += [
            "",
            "Epochs: " + "; ".join(f"{f:g}: {', '.join(f'{e:g}' for e in es)}" for f, es in epochs.items() if es) + ". "
            + (
                f"\\* not converged (in some cell val top-1 still gained ≥ {100 * CONVERGED_GAIN:.1f} pt over the last {CONVERGED_WINDOW} "
                "epochs, or it ran too few epochs to tell)."
                if any(not p["converged"] for r in eff["rows"] for p in r["points"])
                else f"Every cell converged (val top-1 gained < {100 * CONVERGED_GAIN:.1f} pt over its last {CONVERGED_WINDOW} epochs)."
            ),
            "",
            f"![top-1 against training samples]({image_prefix}{CHARTS['data_efficiency']})",
            "",
        ]
    lines += ["## Convergence", "", "| model | epochs | best epoch | converged (cells) | largest gain over the last 3 epochs |", "|---|--:|--:|---|--:|"]
    for r in summary:
        cells = [c for c in results["cells"] if c["model"] == r["model"]]
        best_ep = ", ".join(str(c.get("best_epoch")) for c in cells)
        gain = "–" if r.get("last_gain") is None else f"{100 * r['last_gain']:+.2f} pt"
        lines.append(
            f"| {r['model']} | {_num(r['epochs_run_mean'], '{:.1f}')} | {best_ep} | "
            f"{'yes' if r.get('converged') else '**no**'} ({r.get('converged_cells', 0)}/{r['cells']}) | {gain} |"
        )
    lines.append("")
    diff = results.get("per_class")
    if diff:
        lines += [
            f"## Sequence vs image, per class: `{diff['sequence_model']}` vs `{diff['image_model']}`",
            "",
            f"Recall per class pooled over seeds, on {diff['classes_compared']} classes present in the test splits.",
            "",
            f"![per-class recall difference]({image_prefix}{CHARTS['per_class']})",
            "",
            "| class | test samples | sequence recall % | image recall % | image − sequence |",
            "|---|--:|--:|--:|--:|",
        ]
        for r in diff["image_better"][:8] + diff["sequence_better"][:8]:
            lines.append(f"| `{r['label']}` | {r['support']} | {100 * r['sequence']:.1f} | {100 * r['image']:.1f} | {100 * r['diff']:+.1f} |")
        lines += ["", "Top confusions (true → predicted, count over seeds):", ""]
        for kind in ("sequence", "image"):
            conf = diff[f"{kind}_confusions"][:6]
            text = ", ".join(f"`{c['true']}`→`{c['predicted']}` {c['count']}" for c in conf) or "none"
            lines.append(f"- {kind} (`{diff[f'{kind}_model']}`): {text}")
        lines.append("")
    return "\n".join(lines)


def _csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue()


def cell_rows(results: dict) -> list[dict]:
    rows = []
    for c in results["cells"]:
        rows.append(
            {
                "model": c["model"], "representation": c["representation"], "seed": c["seed"], "split_id": c["split_id"],
                "params": c["params"], "epochs_run": c["epochs_run"], "train_seconds": round(c["train_seconds"], 3),
                "train_samples_per_s": round(c["train_samples_per_s"], 1), "train_data_fraction": c["train_data_fraction"],
                "test_top1": c["test"]["top1"], "test_top5": c["test"]["top5"], "test_macro_recall": c["test"]["macro_recall"],
                "infer_samples_per_s": round(c["inference"]["samples_per_s"], 1),
                "latency_p50_ms": round(c["latency"]["p50_ms"], 4), "latency_p95_ms": round(c["latency"]["p95_ms"], 4),
                "train_peak_rss_mb": round(c["memory"]["train_peak_rss_mb"], 1), "cuda_train_peak_mb": c["memory"]["cuda_train_peak_mb"],
            }
        )
    return rows


def write(results: dict, out_dir) -> dict[str, Path]:
    """Add ``summary``, ``verdict`` and ``per_class`` to ``results`` and write every output file."""
    out = Path(out_dir)
    summary = summarize(results)
    full = full_data(results)  # the comparisons are at full training data
    results["summary"] = summary
    results["equal_compute"] = equal_compute(full, summary)
    results["probes"] = probe_summary(full, summary)
    results["data_efficiency"] = data_efficiency(results)
    results["verdict"] = verdict(full, summary)
    seq, img = _best(summary, "sequence"), _best(summary, "image")
    results["per_class"] = per_class_difference(full, seq["model"], img["model"]) if seq and img else None
    title = f"{results['data']['name']}" + (" (SYNTHETIC)" if results["data"]["synthetic"] else "") + f" — {results['environment']['device']}"
    paths = {}
    chart_latency(summary, out / CHARTS["latency"], title)
    paths["latency"] = out / CHARTS["latency"]
    chart_curves(full, summary, out / CHARTS["curves"], title)
    if results["data_efficiency"]:
        chart_data_efficiency(results["data_efficiency"], out / CHARTS["data_efficiency"], title)
        paths["data_efficiency"] = out / CHARTS["data_efficiency"]
    paths["curves"] = out / CHARTS["curves"]
    if results["per_class"]:
        chart_per_class(results["per_class"], out / CHARTS["per_class"], title)
        paths["per_class"] = out / CHARTS["per_class"]
    if results["probes"]:
        chart_probes(results["probes"], out / CHARTS["probes"], title)
        paths["probes"] = out / CHARTS["probes"]
    for name, text in {
        "results.json": json.dumps(results, indent=1),
        "results.csv": _csv_text([{k: v for k, v in r.items()} for r in summary]),
        "cells.csv": _csv_text(cell_rows(results)),
        "report.md": render_report(results),
    }.items():
        with atomic_write(out / name, "w") as fh:
            fh.write(text)
        paths[name] = out / name
    log.info("bench report: %s", out / "report.md")
    return paths
