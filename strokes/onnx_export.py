"""Export a checkpoint's network to ONNX (optional extra: ``pip install '.[onnx]'``).

The exported graph takes exactly the tensors the model's ``forward`` takes
(``image`` ``(B, C, S, S)``, and/or ``points`` ``(B, T, 3)`` with ``lengths``
``(B,)``) with a dynamic batch (and sequence) axis, and outputs ``logits``.
Normalization and rendering stay outside, in Python: apply the checkpoint's
pipeline and render config first. A checkpoint with an ``image_pipeline`` (a late
fusion whose image member was trained on other normalized points than its
sequence member) renders ``image`` from that pipeline's output and ``points``
from ``pipeline``'s, as :class:`strokes.recognizer.Recognizer` does.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


class _Wrapper:
    """Positional-argument adapter, since ONNX inputs are positional."""

    @staticmethod
    def build(model, input_kind: str):
        import torch

        class Positional(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            if input_kind == "image":

                def forward(self, image):
                    return self.model(image=image)

            elif input_kind == "sequence":

                def forward(self, points, lengths):
                    return self.model(points=points, lengths=lengths)

            else:

                def forward(self, points, lengths, image):
                    return self.model(points=points, lengths=lengths, image=image)

        return Positional().eval()


def example_inputs(loaded, batch: int = 4, length: int = 20, seed: int = 0) -> dict:
    """Random but realistic inputs (normalized random-walk ink) for tracing and checking."""
    import torch

    from rendering import rasterize_batch

    rng = np.random.default_rng(seed)
    lengths = np.full(batch, length, dtype=np.int64)
    lengths[1:] = rng.integers(2, length + 1, batch - 1)
    pts = np.zeros((batch, length, 3), np.float32)
    for i, n in enumerate(lengths):
        walk = np.cumsum(rng.normal(0, 0.05, (n, 2)), 0)
        walk = (walk - walk.min(0)) / max(np.ptp(walk, 0).max(), 1e-6) * 0.9 + 0.05
        pts[i, :n, :2] = walk
        pts[i, n - 1, 2] = 1
    out = {}
    if loaded.input_kind in ("sequence", "both"):
        out["points"] = torch.from_numpy(pts)
        out["lengths"] = torch.from_numpy(lengths)
    if loaded.input_kind in ("image", "both"):
        flat = np.concatenate([pts[i, :n] for i, n in enumerate(lengths)])
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        out["image"] = torch.from_numpy(rasterize_batch(flat, offsets, config=loaded.render))
    return out


def export_onnx(checkpoint, output, *, check: bool = True, opset: int = 18) -> dict:
    """Write ``checkpoint`` as ONNX to ``output``, atomically.

    Args:
        checkpoint: a checkpoint path (or anything :func:`strokes.training.checkpoint.load_checkpoint` takes).
        output: the ``.onnx`` file to write.
        check: run the file with onnxruntime and compare with PyTorch.
        opset: the ONNX opset version.

    Returns:
        ``{"path", "inputs", "exporter"}``, and with ``check`` also ``"max_abs_diff"``.

    Raises:
        ValueError: when the ``onnx`` extra is not installed or no exporter can
            export the model.
    """
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ValueError(
            "ONNX export needs the optional 'onnx' extra: pip install -c constraints.txt -e '.[onnx]'"
        ) from None
    import tempfile

    import torch

    from ._util import atomic_write
    from .training.checkpoint import load_checkpoint

    loaded = load_checkpoint(checkpoint)
    wrapper = _Wrapper.build(loaded.model, loaded.input_kind)
    inputs = example_inputs(loaded)
    names = list(inputs)
    dynamic = {
        "image": {0: "batch"},
        "points": {0: "batch", 1: "time"},
        "lengths": {0: "batch"},
        "logits": {0: "batch"},
    }
    output = Path(output)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp) / "model.onnx"
        exporter, errors = None, []
        for dynamo in (True, False):  # torch.export first; TorchScript tracing for what it can't take
            try:
                chatter = io.StringIO()  # the torch.export exporter prints its progress
                with warnings.catch_warnings(), contextlib.redirect_stdout(chatter):
                    # input checks in forward are constants in a traced graph: expected, not a problem
                    warnings.simplefilter("ignore", torch.jit.TracerWarning)
                    for category in (DeprecationWarning, FutureWarning, UserWarning):  # exporter chatter
                        warnings.simplefilter("ignore", category)
                    torch.onnx.export(
                        wrapper,
                        tuple(inputs[n] for n in names),
                        str(tmp_path),
                        input_names=names,
                        output_names=["logits"],
                        dynamic_axes={k: v for k, v in dynamic.items() if k in names or k == "logits"},
                        opset_version=opset,
                        dynamo=dynamo,
                        **({"external_data": False} if dynamo else {}),  # one self-contained file
                    )
                exporter = "torch.export" if dynamo else "torchscript"
                log.debug("%s", chatter.getvalue())
                break
            except Exception as exc:  # the exporters raise many types; keep the reason
                errors.append(f"{'torch.export' if dynamo else 'torchscript'}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
                log.info("ONNX export of %s with %s failed: %s", loaded.name, "torch.export" if dynamo else "tracing", exc)
        if exporter is None:
            raise ValueError(f"model {loaded.name} could not be exported to ONNX: {'; '.join(errors)}")
        data = tmp_path.read_bytes()
    with atomic_write(output, "wb") as fh:
        fh.write(data)
    result = {"path": str(output), "inputs": names, "exporter": exporter}
    if check:
        result["max_abs_diff"] = check_onnx(output, loaded, inputs)
    return result


def check_onnx(path, loaded, inputs: dict | None = None, atol: float = 1e-4) -> float:
    """Run the ONNX file with onnxruntime on ``inputs`` and compare with PyTorch.

    Args:
        path: the ``.onnx`` file.
        loaded: the :class:`~strokes.training.checkpoint.LoadedModel` it was exported from.
        inputs: the model's input tensors by name (default: a small random batch).
        atol: the tolerance, relative to the largest logit (at least 1).

    Returns:
        The largest absolute difference between the two outputs.

    Raises:
        ValueError: when onnxruntime is missing or the outputs differ by more
            than the tolerance.
    """
    import torch

    try:
        import onnxruntime as ort
    except ImportError:
        raise ValueError("checking needs onnxruntime: pip install -c constraints.txt -e '.[onnx]'") from None
    inputs = inputs or example_inputs(loaded, batch=5, length=17, seed=1)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {i.name: inputs[i.name].numpy() for i in sess.get_inputs()}
    got = sess.run(["logits"], feed)[0]
    with torch.inference_mode():
        want = loaded.model(**inputs).numpy()
    diff = float(np.abs(got - want).max())
    if not diff <= atol * max(1.0, float(np.abs(want).max())):
        raise ValueError(f"ONNX output differs from PyTorch by {diff:.3g} (tolerance {atol})")
    return diff
