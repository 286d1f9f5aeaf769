"""HASYv2: 168,233 handwritten symbols of 369 classes as 32×32 PNG images.

HASYv2 (Thoma, 2017, https://zenodo.org/record/259444) was rendered from the
online recordings of write-math.com (HWRT). It has no strokes. Unpacked, it is
a directory like this::

    HASYv2/
        hasy-data/v2-00000.png ...        32x32 images, black ink on white
        hasy-data-labels.csv              path,symbol_id,latex,user_id
        symbols.csv                       symbol_id,latex,training_samples,test_samples
        classification-task/fold-1/train.csv, test.csv   (same columns)
        ...
        classification-task/fold-10/...
        verification-task/...             (not used here)

Paths in a CSV are relative to that CSV's directory (``hasy-data/v2-00000.png``
in the labels file, ``../../hasy-data/v2-00000.png`` in the fold lists).
:func:`load_hasy` reads the labels file, decodes every PNG, and marks each
sample's role in each official fold (``fold_roles`` of the :class:`strokes.ImageDataset`),
so ``strokes bench --split hasy-folds`` can run the paper's 10-fold protocol.

Ink polarity: HASYv2 stores dark ink on a bright background; the toolkit uses
bright ink (see :mod:`strokes.images`). ``ink="auto"`` (the default) decides
from the data: a symbol's background is most of its pixels, so if most images
are mostly bright, the ink is dark and the pixels are inverted.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import numpy as np

from .._util import tqdm_disable
from ..dataset import Skipped
from ..images import FOLD_TEST, FOLD_TRAIN, ImageDataset

log = logging.getLogger(__name__)

__all__ = ["load_hasy", "is_hasy", "LABELS_FILE", "COLUMNS"]

#: the labels file at the root of a HASYv2 directory
LABELS_FILE = "hasy-data-labels.csv"
#: its columns (the fold lists have the same)
COLUMNS = ("path", "symbol_id", "latex", "user_id")

_INK = ("auto", "dark", "bright")


def is_hasy(path) -> bool:
    """True for a HASYv2 directory (it holds ``hasy-data-labels.csv``) or that file itself."""
    p = Path(path)
    return (p.is_dir() and (p / LABELS_FILE).is_file()) or (p.is_file() and p.name == LABELS_FILE)


def _read_rows(csv_path: Path, skipped: list, required=COLUMNS):
    """Yield ``(line_number, row dict)`` of a HASY CSV; rows missing a ``required`` value go to ``skipped``."""
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"{csv_path} is not a HASYv2 list: it lacks the column(s) {', '.join(missing)} "
                f"(expected the header {','.join(COLUMNS)})"
            )
        for row in reader:
            line = reader.line_num
            if any(row.get(c) in (None, "") for c in required):
                skipped.append(Skipped(f"{csv_path.name} line {line}", "a column is empty or missing"))
                continue
            yield line, row


def _key(csv_dir: Path, path: str) -> str:
    """A path from a CSV, resolved against the CSV's directory, normalized (no symlink lookups)."""
    return os.path.normpath(os.path.join(csv_dir, path))


def _decode(path: str, size: int, ink: str) -> np.ndarray:
    """One PNG as ``(size, size)`` uint8 grey levels; ValueError/OSError when unusable.

    Transparent pixels are page: they are composited onto the background that
    contrasts with the ink (white under dark ink, black under bright ink; with
    ``ink="auto"``, decided from the opaque pixels of this image).
    """
    from PIL import Image

    with Image.open(path) as im:
        if im.size != (size, size):  # checked from the header, before decoding any pixels
            raise ValueError(f"image is {im.size[0]}x{im.size[1]}, expected {size}x{size}")
        im.load()
        if im.mode in ("RGBA", "LA", "PA") or (im.mode in ("P", "L", "RGB") and "transparency" in im.info):
            la = np.asarray(im.convert("LA"), dtype=np.float32)  # (S, S, 2): grey, alpha
            grey, alpha = la[..., 0], la[..., 1] / 255
            if ink == "auto":
                opaque = alpha > 0.5
                bright_ink = bool(opaque.any()) and float(np.median(grey[opaque])) > 127.5
            else:
                bright_ink = ink == "bright"
            page = 0.0 if bright_ink else 255.0
            return np.round(grey * alpha + page * (1 - alpha)).astype(np.uint8)
        return np.asarray(im.convert("L"), dtype=np.uint8)


def load_hasy(
    source,
    *,
    ink: str = "auto",
    size: int = 32,
    limit: int | None = None,
    folds: bool = True,
    progress: bool | None = None,
) -> ImageDataset:
    """Load HASYv2 (or data in its layout) as an :class:`strokes.images.ImageDataset`.

    Args:
        source: the HASYv2 directory, or its ``hasy-data-labels.csv``.
        ink: how the PNGs store ink: ``"dark"`` (HASYv2: black on white),
            ``"bright"``, or ``"auto"`` (decide from the data). The result is
            always bright ink in ``[0, 1]``.
        size: the expected image side; other sizes are skipped with a reason.
        limit: read at most this many rows of the labels file.
        folds: read the official folds in ``classification-task/fold-K``.
        progress: show a progress bar (None: when on a terminal).

    Returns:
        The images with labels (the ``latex`` column), writers (``user_id``),
        sources (file paths relative to the directory) and ``fold_roles``.
        Rows that cannot be used (a missing or unreadable PNG, a wrong size,
        an empty column) are skipped and listed in ``skipped``;
        ``info["records_in"] == info["loaded"] + info["skipped"]``.

    Raises:
        FileNotFoundError: ``source`` does not exist or has no labels file.
        ValueError: a bad option, or a labels file without the HASY columns.
    """
    from tqdm.auto import tqdm

    if ink not in _INK:
        raise ValueError(f"ink must be one of {', '.join(_INK)}, got {ink!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be an int >= 0 or None, got {limit!r}")
    src = Path(source)
    labels_csv = src / LABELS_FILE if src.is_dir() else src
    if not labels_csv.is_file():
        raise FileNotFoundError(
            f"{labels_csv} not found: point strokes at the unpacked HASYv2 directory "
            f"(the one holding {LABELS_FILE} and hasy-data/)"
        )
    root = labels_csv.parent

    skipped: list[Skipped] = []
    rows = []
    records_in = 0
    if limit != 0:
        for line, row in _read_rows(labels_csv, skipped):
            rows.append((line, row))
            if limit is not None and len(rows) + len(skipped) >= limit:
                break
    records_in = len(rows) + len(skipped)  # rows with empty columns count as read too

    from PIL import Image

    pixels = np.zeros((len(rows), size, size), np.uint8)
    keep = np.zeros(len(rows), bool)
    labels, writers, sources = [], [], []
    symbol_ids: dict[str, int] = {}
    first_line: dict[str, int] = {}  # image path -> the line that loaded it
    for j, (line, row) in enumerate(
        tqdm(rows, desc=f"read {root.name}", unit="img", leave=False, disable=tqdm_disable(progress))
    ):
        rel = row["path"]
        where = f"{LABELS_FILE} line {line} ({rel})"
        try:
            sid = int(row["symbol_id"])
        except ValueError:
            skipped.append(Skipped(where, f"symbol_id {row['symbol_id']!r} is not an integer"))
            continue
        key = _key(root, rel)
        if key in first_line:
            skipped.append(Skipped(where, f"the same image as line {first_line[key]} (listed twice)"))
            continue
        try:
            pixels[j] = _decode(key, size, ink)
        except FileNotFoundError:
            skipped.append(Skipped(where, "the image file is missing"))
            continue
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:  # PIL's errors on bad files
            skipped.append(Skipped(where, f"unreadable image: {exc}"))
            continue
        first_line[key] = line
        latex = row["latex"]
        if symbol_ids.setdefault(latex, sid) != sid:
            log.warning("%s: latex %r has symbol_id %d here but %d before", where, latex, sid, symbol_ids[latex])
        keep[j] = True
        labels.append(latex)
        writers.append(row["user_id"].strip())
        sources.append(os.path.relpath(key, root))
    pixels = pixels[keep]
    kept_rows = [r for r, k in zip(rows, keep) if k]

    # polarity: HASYv2's background is white; the toolkit's ink is bright. A symbol's
    # page is most of its pixels, so an image whose median pixel is bright has dark ink.
    flat = pixels.reshape(len(pixels), size * size)
    mostly_bright = float((np.median(flat, axis=1) > 127.5).mean()) if len(pixels) else float("nan")
    if ink != "auto":
        stored = ink
    elif not len(pixels):
        stored = "unknown"
    else:
        stored = "dark" if mostly_bright >= 0.5 else "bright"
        log.info("%s: %.1f%% of images have a bright page, so the ink is %s", root, 100 * mostly_bright, stored)
        if 0.2 < mostly_bright < 0.8:
            log.warning(
                "%s: %.0f%% of images have a bright page and %.0f%% a dark one: mixed polarity? all were read as %s ink; "
                "pass ink='dark' or ink='bright' if that is wrong", root, 100 * mostly_bright, 100 * (1 - mostly_bright), stored,
            )
    images = pixels.astype(np.float32) / 255.0
    if stored == "dark":
        np.subtract(1.0, images, out=images)

    vocab = sorted(set(labels))
    lookup = {c: i for i, c in enumerate(vocab)}
    writer_names = sorted(set(writers), key=lambda w: (len(w), w))  # numeric ids in numeric order
    wlook = {w: i for i, w in enumerate(writer_names)}

    fold_roles, fold_info = None, {}
    task = root / "classification-task"
    if folds and task.is_dir():
        fold_roles, fold_info = _read_folds(task, root, {s: i for i, s in enumerate(sources)})

    info = {
        "format": "hasy",
        "records_in": records_in,
        "loaded": len(labels),
        "skipped": len(skipped),
        "ink_in_files": stored,
        "mostly_bright_fraction": mostly_bright,
        "symbol_ids": {c: symbol_ids[c] for c in vocab},
        **fold_info,
    }
    if len(kept_rows) + len(skipped) != records_in:  # every row read is either loaded or skipped
        raise RuntimeError(f"HASY loader lost rows: {records_in} in, {len(kept_rows)} loaded, {len(skipped)} skipped")
    if skipped:
        log.warning("%s: skipped %d of %d rows (first: %s)", root, len(skipped), records_in, skipped[0])
    return ImageDataset(
        images,
        np.fromiter((lookup[c] for c in labels), np.int64, len(labels)),
        vocab,
        writer_ids=np.fromiter((wlook[w] for w in writers), np.int32, len(writers)),
        writer_names=writer_names,
        source_ids=np.arange(len(sources), dtype=np.int32),
        source_names=sources,
        fold_roles=fold_roles,
        skipped=skipped,
        name=str(root),
        info=info,
    )


def _fold_number(path: Path) -> int | None:
    """K for a directory named ``fold-K``, else None."""
    name = path.name
    if name.startswith("fold-") and name[5:].isdigit():
        return int(name[5:])
    return None


def _read_folds(task: Path, root: Path, index: dict[str, int]) -> tuple[np.ndarray | None, dict]:
    """``fold_roles`` ``(N, K)`` from ``classification-task/fold-K/{train,test}.csv``."""
    dirs = sorted((d for d in task.iterdir() if d.is_dir() and _fold_number(d) is not None), key=_fold_number)
    numbers = [_fold_number(d) for d in dirs]
    if not dirs:
        return None, {}
    if numbers != list(range(1, len(dirs) + 1)):
        raise ValueError(f"{task}: fold directories must be fold-1 ... fold-K without gaps, found {numbers}")
    roles = np.zeros((len(index), len(dirs)), np.int8)
    unmatched, overlap, bad_rows = 0, 0, []
    for k, d in enumerate(dirs):
        for role, fname in ((FOLD_TRAIN, "train.csv"), (FOLD_TEST, "test.csv")):
            path = d / fname
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing; each HASYv2 fold has a train.csv and a test.csv")
            for _, row in _read_rows(path, bad_rows, required=("path",)):
                i = index.get(os.path.relpath(_key(d, row["path"]), root))
                if i is None:
                    unmatched += 1  # a listed image that was skipped (or cut by limit)
                    continue
                if roles[i, k] not in (0, role):
                    overlap += 1
                roles[i, k] = role
    if bad_rows:
        log.warning("%s: %d fold-list row(s) have no path and were ignored (first: %s)", task, len(bad_rows), bad_rows[0])
    if overlap:
        raise ValueError(f"{task}: {overlap} image(s) are listed in both the train and the test list of a fold")
    tested = (roles == FOLD_TEST).sum(1)
    info = {
        "folds": len(dirs),
        "fold_test_sizes": [int(x) for x in (roles == FOLD_TEST).sum(0)],
        "fold_entries_unmatched": unmatched,
        "fold_rows_without_path": len(bad_rows),
        "samples_in_no_test_fold": int((tested == 0).sum()),
    }
    if unmatched:
        log.info("%s: %d fold entries name images that were not loaded (skipped or beyond limit)", task, unmatched)
    return roles, info
