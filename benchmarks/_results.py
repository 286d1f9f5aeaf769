"""Shared by the benchmarks: replace one ``## `` section of RESULTS.md, keeping the others."""

from __future__ import annotations

from pathlib import Path


def write_section(path, heading: str, section: str) -> None:
    """Replace the ``heading`` section of ``path`` (up to the next ``## `` line) with ``section``,
    or append it; written atomically, keeping the file's permissions."""
    from strokes._util import atomic_write

    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.rstrip("\r\n") == heading), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((j for j in range(start + 1, len(lines)) if lines[j].startswith("## ")), len(lines))
        rest = "".join(lines[end:])
        new = "".join(lines[:start]) + section + ("\n" + rest if rest else "")
    with atomic_write(path, "wb") as fh:
        fh.write(new.encode("utf-8"))
