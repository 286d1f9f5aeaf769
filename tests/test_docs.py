"""The documentation builds with warnings as errors, and has the pages it promises.

One Sphinx build (``sphinx-build -W --keep-going -n -b html docs OUT``) serves
every test here. It needs the ``docs`` extra (sphinx, furo, myst-parser); the
tests skip where that is missing, and fail under ``CI=true``, which installs it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
IN_CI = os.environ.get("CI", "").lower() == "true"

#: the pictures docs/figures.py draws at build time (the rasterizer's channels first)
FIGURES = (
    "channels.png",
    "channels-rgb.png",
    "normalize.png",
    "sequence-vs-raster.png",
    "render-options.png",
    "augment.png",
)


def _require(module: str) -> None:
    if IN_CI:
        __import__(module)  # CI installs the docs extra: missing is a failure
    else:
        pytest.importorskip(module)


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """One build for the module; with ``--keep-going`` it writes every page even when it fails."""
    for module in ("sphinx", "furo", "myst_parser"):
        _require(module)
    out = tmp_path_factory.mktemp("docs-html")
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-b", "html", "-q", str(DOCS), str(out)]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    return proc, out


@pytest.fixture(scope="module")
def built(build) -> Path:
    proc, out = build
    if not (out / "index.html").is_file():
        pytest.fail(f"the docs build wrote no pages (exit {proc.returncode}):\n{proc.stderr[-20000:]}")
    return out


def test_build_passes_with_warnings_as_errors(build):
    proc, _ = build
    assert proc.returncode == 0, (
        f"the docs build failed (exit {proc.returncode}); every warning is an error:\n"
        f"{proc.stderr[-20000:]}\n{proc.stdout[-2000:]}"
    )


def _page(out: Path, name: str) -> str:
    path = out / name
    assert path.is_file(), f"{name} was not built"
    return path.read_text(encoding="utf-8")


def test_build_has_the_pages(built):
    for name in ("index", "getting-started", "data-formats", "representations", "benchmarks", "api/index"):
        _page(built, f"{name}.html")
    assert 'id="hasyv2-images"' in _page(built, "data-formats.html")


@pytest.mark.parametrize(
    "page, objects",
    [
        ("api/strokes.html", ["strokes.load", "strokes.StrokeDataset", "strokes.recognize", "strokes.split"]),
        ("api/strokes.normalize.html", ["strokes.normalize.normalize", "strokes.normalize.Resample"]),
        ("api/strokes.formats.html", ["strokes.formats.ink_to_points3", "strokes.formats.stroke3_to_stroke5"]),
        ("api/strokes.io.html", ["strokes.io.import_to_store", "strokes.io.detexify.load_detexify_sql"]),
        ("api/rendering.html", ["rendering.rasterize", "rendering.RenderConfig", "rendering.augment.Augment"]),
        ("api/models.html", ["models.create_model", "models.lstm.LSTMConfig", "models.vgg_gap.VGGGAP"]),
    ],
)
def test_api_reference_documents(built, page, objects):
    html = _page(built, page)
    missing = [o for o in objects if f'id="{o}"' not in html]
    assert not missing, f"{page} does not document {missing}"


def test_channel_pictures_are_drawn_and_shown(built):
    html = _page(built, "representations.html")
    for name in FIGURES:
        image = built / "_images" / name
        assert image.is_file(), f"{name} was not drawn or not copied"
        assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{name} is not a PNG"
        assert f"_images/{name}" in html, f"representations.html does not show {name}"


def test_benchmark_results_are_included_with_their_images(built):
    html = _page(built, "benchmarks.html")
    results = (ROOT / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8")
    text = " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())
    for heading in re.findall(r"^#+\s+(.+?)\s*$", results, re.MULTILINE):
        words = " ".join(re.sub(r"[`*]", "", heading).split())
        assert words in text, f"RESULTS.md heading {heading!r} is not on the benchmarks page"
    for ref in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", results):
        name = Path(ref).name
        assert (built / "_images" / name).is_file(), f"RESULTS.md image {ref} did not resolve"
        assert f"_images/{name}" in html
