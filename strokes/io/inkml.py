"""InkML (CROHME) reader.

A symbol is a ``<traceGroup>`` that directly holds ``<traceView>`` elements;
its label is the text of its ``<annotation type="truth">``. Outer groups
without trace views (``Segmentation``, ``From ITF``) are containers. Channels
follow ``<traceFormat>`` (X, Y, optional T, F, ...; X Y when absent). The
writer comes from ``<annotation type="writer">``.
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .._util import tqdm_disable
from ..dataset import DatasetBuilder, StrokeDataset
from ..ink import MAX_COORDINATE

log = logging.getLogger(__name__)

__all__ = ["load_inkml", "parse_inkml_file", "InkmlError"]


class InkmlError(ValueError):
    """A whole InkML file is unusable."""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


_ISVALUE = np.ones(256, dtype=bool)
_ISVALUE[[9, 10, 13, 32, 44]] = False  # tab, newlines, space, comma


def _parse_traces(texts: list[str], nch: int) -> list[np.ndarray]:
    """Parse trace texts ("x y, x y, ...") into (n, nch) arrays, one numpy call per file."""
    counts = [t.count(",") + 1 for t in texts]
    joined = ",".join(texts)
    # every point (comma-separated) must hold exactly nch values: count them, vectorized
    b = np.frombuffer(joined.encode("utf-8", errors="replace"), dtype=np.uint8)
    isval = _ISVALUE[b]
    starts = isval.copy()
    starts[1:] &= ~isval[:-1]
    per_point = np.bincount(np.cumsum(b == 44)[starts], minlength=sum(counts))  # 44: ','
    if per_point.size == sum(counts) and np.all(per_point == nch):
        flat = np.array(joined.replace(",", " ").split(), dtype=np.float64)
        return np.split(flat.reshape(-1, nch), np.cumsum(counts)[:-1])
    # some trace disagrees with the declared channels: parse trace by trace, point by point width
    out = []
    for text in texts:
        pts = [p.split() for p in text.split(",")]
        widths = {len(p) for p in pts}
        if len(widths) != 1 or min(widths) < 2:
            raise ValueError(f"points with {sorted(widths)} values in one trace")
        out.append(np.array(pts, dtype=np.float64))
    return out


def parse_inkml_file(path, source: str | None = None):
    """Parse one InkML file.

    Returns:
        (symbols, problems, writer): ``symbols`` is a list of ``(label, strokes)``
        where strokes are ``(n, 2)`` or ``(n, 3)`` ``[x, y, t]`` arrays;
        ``problems`` is a list of ``(source, reason)`` for symbols that could
        not be read.

    Raises:
        InkmlError: when the file as a whole is unreadable (empty, malformed XML).
    """
    source = source or str(path)
    try:
        if os.path.getsize(path) == 0:
            raise InkmlError("empty file (0 bytes)")
        root = ET.parse(path).getroot()
    except InkmlError:
        raise
    except ET.ParseError as exc:
        raise InkmlError(f"malformed XML ({exc}); the file is probably truncated") from None
    except OSError as exc:
        raise InkmlError(f"cannot read file ({exc.strerror})") from None
    except (LookupError, ValueError) as exc:  # the XML declaration names an unknown or unsupported encoding
        raise InkmlError(f"cannot decode the XML ({exc})") from None
    if _local(root.tag) != "ink":
        raise InkmlError(f"root element is <{_local(root.tag)}>, not <ink>")

    channels = ["X", "Y"]
    writer = None
    traces: dict[str, str] = {}
    for el in root:
        tag = _local(el.tag)
        if tag == "trace":
            traces[el.get("id", el.get("{http://www.w3.org/XML/1998/namespace}id", ""))] = (el.text or "").strip()
        elif tag == "traceFormat":
            channels = [c.get("name", "?").upper() for c in el if _local(c.tag) == "channel"] or channels
        elif tag == "annotation" and el.get("type") == "writer":
            writer = (el.text or "").strip() or None
        elif tag == "definitions":  # <definitions><context><traceFormat> form
            for tf in el.iter():
                if _local(tf.tag) == "traceFormat":
                    channels = [c.get("name", "?").upper() for c in tf if _local(c.tag) == "channel"] or channels
    if "X" not in channels or "Y" not in channels:
        raise InkmlError(f"traceFormat has no X and Y channels: {channels}")
    ix, iy = channels.index("X"), channels.index("Y")
    it = channels.index("T") if "T" in channels else None

    ids = list(traces)
    try:
        arrays = dict(zip(ids, _parse_traces([traces[i] for i in ids], len(channels)))) if ids else {}
        bad_traces = {}
    except ValueError:  # isolate the bad traces so that good symbols still load
        arrays, bad_traces = {}, {}
        for i in ids:
            try:
                arrays[i] = _parse_traces([traces[i]], len(channels))[0]
            except ValueError as exc:
                bad_traces[i] = str(exc)

    symbols, problems = [], []
    for group in root.iter():
        if _local(group.tag) != "traceGroup":
            continue
        refs = [c.get("traceDataRef") for c in group if _local(c.tag) == "traceView"]
        if not refs:
            continue  # a container, not a symbol
        gid = group.get("{http://www.w3.org/XML/1998/namespace}id", "?")
        where = f"{source}#{gid}"
        truth = [c for c in group if _local(c.tag) == "annotation" and c.get("type") == "truth"]
        label = (truth[0].text or "").strip() if truth else ""
        if not label:
            problems.append((where, "symbol has no truth annotation"))
            continue
        missing = [r for r in refs if r not in arrays]
        if missing:
            why = "; ".join(bad_traces.get(r, "no such trace") for r in missing)
            problems.append((where, f"traceView refers to unreadable trace(s) {missing}: {why}"))
            continue
        narrow = [r for r in refs if arrays[r].shape[1] <= max(ix, iy)]
        if narrow:  # a trace whose width disagrees with the channels (read point by point) may lack X or Y
            problems.append(
                (where, f"trace(s) {narrow} hold {arrays[narrow[0]].shape[1]} value(s) per point, but the traceFormat "
                        f"{channels} puts X and Y at positions {ix} and {iy}")
            )
            continue
        strokes = []
        for r in refs:
            a = arrays[r]
            if it is not None and a.shape[1] > it:
                strokes.append(a[:, [ix, iy, it]])
            else:
                strokes.append(a[:, [ix, iy]])
        if any(len(s) == 0 for s in strokes):
            problems.append((where, "symbol has an empty trace"))
            continue
        if not all(np.isfinite(s).all() for s in strokes):
            problems.append((where, "symbol has non-finite coordinates"))
            continue
        if any(np.abs(s[:, :2]).max() > MAX_COORDINATE for s in strokes):  # as as_ink: past float32, they would load as inf
            problems.append((where, f"symbol has x or y beyond ±{MAX_COORDINATE:.0e}; no pen or screen writes there"))
            continue
        if len({s.shape[1] for s in strokes}) > 1:
            strokes = [s[:, :2] for s in strokes]
        symbols.append((label, strokes))
    return symbols, problems, writer


def _inkml_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.suffix.lower() == ".inkml" and p.is_file())


def load_inkml(path, *, progress: bool | None = None, limit: int | None = None, **_unused) -> StrokeDataset:
    """Load a directory of ``.inkml`` files (searched recursively), or one file.

    Unreadable files and symbols are skipped and listed in ``ds.skipped``.
    ``ds.info`` counts files (``files_in == files_read + files_skipped``) and
    symbols (``symbols_in == loaded + symbols_skipped``).
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"no such file or directory: {root}")
    files = _inkml_files(root)
    if limit is not None:
        files = files[:limit]
    if not files:
        raise ValueError(f"{root} holds no .inkml files")
    base = root if root.is_dir() else root.parent
    builder = DatasetBuilder(name=str(root))
    files_skipped = symbols_skipped = 0
    for f in tqdm(files, desc="InkML", unit="file", disable=tqdm_disable(progress)):
        rel = f.relative_to(base).as_posix()
        try:
            symbols, problems, writer = parse_inkml_file(f, rel)
        except InkmlError as exc:
            builder.skip(rel, str(exc))
            files_skipped += 1
            continue
        for where, why in problems:
            builder.skip(where, why)
        symbols_skipped += len(problems)
        for label, strokes in symbols:
            builder.add(strokes, label, writer, rel)
    info = {
        "format": "inkml",
        "files_in": len(files),
        "files_read": len(files) - files_skipped,
        "files_skipped": files_skipped,
        "symbols_in": len(builder) + symbols_skipped,
        "symbols_skipped": symbols_skipped,
        "records_in": len(files),
        "unit": "files",
    }
    ds = builder.build(info)
    if builder.skipped:
        log.warning("InkML: skipped %d file(s) and %d symbol(s) in %s", files_skipped, symbols_skipped, root)
    return ds
