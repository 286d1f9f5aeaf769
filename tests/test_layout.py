"""The tree shows the flow: data core -> rendering/models -> training -> applications.

A lower layer never imports a higher one; checked statically on every import
statement (module level or inside functions), so a lazy import cannot hide a loop.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: layer of each top-level module of the package tree (a package's submodules share its layer)
CORE = {"strokes._util", "strokes._version", "strokes.probes", "strokes.ink", "strokes.formats", "strokes.dataset", "strokes.images", "strokes.io",
        "strokes.normalize", "strokes.splits", "strokes.synthetic", "strokes.glyphs"}
LAYERS = {"core": 0, "rendering": 1, "models": 1, "training": 2, "apps": 3}


def layer_of(module: str) -> str | None:
    """The layer of a dotted module name, or None outside the project."""
    top = module.split(".")[0]
    if top in ("rendering", "models"):
        return top
    if top != "strokes":
        return None
    if module == "strokes":
        return "apps"  # the package's __init__ re-exports from every layer
    parts = module.split(".")
    if parts[1] == "training":
        return "training"
    if ".".join(parts[:2]) in CORE:
        return "core"
    return "apps"  # recognizer, bench, bench_report, server, cli, onnx_export, __main__


def module_name(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in ``path``, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if node.module is None:  # from . import x: x may be a submodule
                out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, mod))
    return out


SOURCES = sorted(p for d in ("strokes", "rendering", "models") for p in (ROOT / d).rglob("*.py"))


def test_layers_are_known():
    """Every project module has a layer, and the training stack lives in strokes/training/."""
    names = {module_name(p) for p in SOURCES}
    for m in ("train", "batching", "checkpoint", "evaluate", "distributed", "tune"):
        assert f"strokes.training.{m}" in names
        assert f"strokes.{m}" not in names
    assert all(layer_of(n) is not None for n in names)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_upward_imports(path):
    """A module imports only from its own layer or the layers below it."""
    mine = layer_of(module_name(path))
    bad = []
    for line, mod in imports_of(path):
        theirs = layer_of(mod)
        if theirs is not None and LAYERS[theirs] > LAYERS[mine]:
            bad.append(f"line {line}: {mod} ({theirs})")
    assert not bad, f"{path.relative_to(ROOT)} ({mine}) imports a higher layer: {bad}"


def test_checker_sees_an_upward_import(tmp_path):
    """The checker is not vacuous: a lazy import of the trainer inside a core module is caught."""
    probe = tmp_path / "strokes" / "io" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("def f():\n    from ..training.train import Trainer\n")
    found = imports_of(probe, root=tmp_path)
    assert found == [(2, "strokes.training.train")]
    assert LAYERS[layer_of(found[0][1])] > LAYERS[layer_of(module_name(probe, root=tmp_path))]


MACHINE_PATH = re.compile(r"(?<![\w.])/(?:work|root|home|Users)/[\w.-]+")


def test_no_machine_paths_in_committed_files():
    """No committed text file names an absolute path of the machine it was written on."""
    import subprocess

    try:
        listed = subprocess.run(["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        pytest.skip("git is not available")
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    bad = []
    for name in listed.stdout.splitlines():
        path = ROOT / name
        if path.suffix not in (".md", ".py", ".json", ".csv", ".txt", ".toml", ".cfg", ".rst", ".html", ".js", ".css", "") or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for i, line in enumerate(text.splitlines(), 1):
            if MACHINE_PATH.search(line):
                bad.append(f"{name}:{i}: {MACHINE_PATH.search(line).group(0)}")
    assert not bad, f"absolute machine paths in committed files (make them relative to the repository): {bad[:10]}"


def test_machine_path_pattern():
    """The pattern catches machine paths and leaves relative ones and URLs alone."""
    root = "/"  # spelled apart, so that this file names no machine path itself
    assert MACHINE_PATH.search(f"data at `{root}work/shared/data/crohme`")
    assert MACHINE_PATH.search(f"{root}root/.cache/x")
    assert not MACHINE_PATH.search("`../shared/data/crohme`")
    assert not MACHINE_PATH.search("https://example.org/home/page")
