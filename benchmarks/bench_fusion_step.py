#!/usr/bin/env python
"""Where the joint ``fusion`` model's training step goes, and why bf16 autocast barely speeds it up (issue 14).

``benchmarks/bench_train.py`` finds ``fusion`` short of the 2x training-throughput target
(vgg_gap reaches it). This times, in one process and interleaved round by round, one training
step (forward, cross-entropy, backward, fused AdamW step) on a fixed random batch of the
trainer's shapes (batch 128, 48 points, a 32x32 render in channels-last), with the model as
the Trainer builds it:

* ``fusion`` in fp32, under bf16 autocast, and under bf16 autocast with its GRU run in fp32
  (autocast off around the recurrent layer only); and ``fusion`` with an LSTM sequence branch
  (``sequence_encoder="lstm"``, the same sizes) in fp32 and under bf16 autocast;
* its parts alone: the bidirectional GRU (2 layers of 96 units on 64 inputs) forward +
  backward in fp32, under bf16 autocast, and on bf16 copies of its weights and input
  (``torch.func.functional_call``, gradients flowing back to the fp32 weights); and the same
  for an LSTM of the same size, for comparison (PyTorch's CPU LSTM has a bf16 kernel, its
  GRU does not).

Synthetic tensors, no data loading: the step only. Medians of ``--steps`` timed steps per
setting after warm-up, rounds interleaved so that every setting sees the same machine.

    .venv/bin/python benchmarks/bench_fusion_step.py --threads 2

Run it on an otherwise idle machine. Prints markdown; ``--write`` puts it in the
``## Why fusion misses the training-throughput target (issue 14)`` section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SECTION = "## Why fusion misses the training-throughput target (issue 14)"


class Fp32Rnn:
    """Within: every ``RNNEncoder`` of ``model`` runs its recurrent layer with autocast off, in fp32."""

    def __init__(self, model):
        import torch

        from models.common import RNNEncoder

        self.encoders = [m for m in model.modules() if isinstance(m, RNNEncoder)]
        self.torch = torch

    @contextlib.contextmanager
    def __call__(self):
        torch = self.torch
        saved = []
        for enc in self.encoders:
            rnn = enc.rnn

            def fp32(x, _rnn=rnn):
                with torch.autocast("cpu", enabled=False):
                    return _rnn.__class__.forward(_rnn, x.float())

            saved.append((enc, rnn.forward))
            rnn.forward = fp32
        try:
            yield
        finally:
            for enc, fwd in saved:
                enc.rnn.forward = fwd


def fusion_steps():
    """name -> a function running one training step of the fusion model in that setting."""
    import torch
    import torch.nn.functional as F

    from models import create_model

    g = torch.Generator().manual_seed(0)
    B, T = 128, 48
    points, lengths = torch.rand(B, T, 3, generator=g), torch.full((B,), T)
    image = torch.rand(B, 1, 32, 32, generator=g).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 101, (B,), generator=g)

    def stepper(**options):
        torch.manual_seed(0)
        model = create_model("fusion", num_classes=101, **options).train().to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), fused=True)
        fp32_rnn = Fp32Rnn(model)

        def step(autocast: bool, rnn_fp32: bool = False):
            ctx = fp32_rnn() if rnn_fp32 else contextlib.nullcontext()
            with ctx, torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = F.cross_entropy(model(points=points, lengths=lengths, image=image).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step

    gru, lstm = stepper(), stepper(sequence_encoder="lstm")
    return {
        "fusion step, fp32": lambda: gru(False),
        "fusion step, bf16 autocast": lambda: gru(True),
        "fusion step, bf16 autocast, GRU in fp32": lambda: gru(True, rnn_fp32=True),
        "fusion with an LSTM branch (`sequence_encoder=lstm`), fp32": lambda: lstm(False),
        "fusion with an LSTM branch (`sequence_encoder=lstm`), bf16 autocast": lambda: lstm(True),
    }


def rnn_steps():
    """name -> one forward + backward of a GRU / LSTM of the fusion's size in each setting."""
    import torch
    from torch.func import functional_call

    out = {}
    for cell in ("GRU", "LSTM"):
        torch.manual_seed(0)
        rnn = getattr(torch.nn, cell)(64, 96, num_layers=2, batch_first=True, bidirectional=True, dropout=0.1).train()
        x = torch.randn(128, 48, 64, requires_grad=True)

        def run(mode, rnn=rnn, x=x):
            if mode == "fp32":
                y, _ = rnn(x)
            elif mode == "autocast":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    y, _ = rnn(x)
            else:  # bf16 copies of the weights and the input; gradients reach the fp32 weights
                params = {n: p.to(torch.bfloat16) for n, p in rnn.named_parameters()}
                y, _ = functional_call(rnn, params, (x.to(torch.bfloat16),))
            y.float().pow(2).mean().backward()

        for mode, label in (("fp32", "fp32"), ("autocast", "bf16 autocast"), ("bf16", "bf16 weights and input")):
            out[f"{cell} alone (forward + backward), {label}"] = lambda mode=mode, run=run: run(mode)
    return out


def measure(settings: dict, steps: int, rounds: int, warmup: int = 3) -> dict:
    """Median seconds per call of each setting, ``rounds`` interleaved rounds of ``steps`` calls each."""
    for f in settings.values():
        for _ in range(warmup):
            f()
    times = {k: [] for k in settings}
    for _ in range(rounds):
        for k, f in settings.items():
            for _ in range(steps // rounds or 1):
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in times.items()}


def render(fusion: dict, rnn: dict, meta: dict) -> str:
    L = [SECTION, ""]
    L.append(
        f"Command: `{meta['command']}`; {meta['threads']} torch thread(s), torch {meta['torch']}, "
        f"{meta['machine']['cpu']}, {meta['machine']['usable_cores']} cores; load average {meta['load0']:.2f} before, {meta['load1']:.2f} after; {meta['when']}."
    )
    L.append("")
    L.append("One training step on a fixed random batch of the trainer's shapes (batch 128, 48 points, "
             "32x32 channels-last render; fused AdamW), medians over interleaved rounds:")
    L.append("")
    L.append("| setting | ms per step | vs the GRU fusion in fp32 |")
    L.append("|---|--:|--:|")
    base = fusion["fusion step, fp32"]
    for k, v in fusion.items():
        L.append(f"| {k} | {v * 1e3:.1f} | {base / v:.2f}x |")
    L.append("")
    L.append("| recurrent layer alone (2 x 96 units, bidirectional, 64 inputs) | ms | vs its fp32 |")
    L.append("|---|--:|--:|")
    for cell in ("GRU", "LSTM"):
        b = rnn[f"{cell} alone (forward + backward), fp32"]
        for k, v in rnn.items():
            if k.startswith(cell):
                L.append(f"| {k} | {v * 1e3:.1f} | {b / v:.2f}x |")
    L.append("")
    return "\n".join(L)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    ap.add_argument("--steps", type=int, default=24, help="timed steps per setting (default 24)")
    ap.add_argument("--rounds", type=int, default=4, help="interleaved rounds (default 4)")
    ap.add_argument("--note", action="append", default=[], help="a line to add under the tables (repeatable)")
    ap.add_argument("--write", action="store_true", help="write the section into benchmarks/RESULTS.md")
    args = ap.parse_args(argv)
    if args.threads < 1 or args.steps < 1 or args.rounds < 1:
        ap.error("--threads, --steps and --rounds must be positive")
    import torch

    from benchmarks.bench_io import command_line, machine_info

    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()[0]
    fusion = measure(fusion_steps(), args.steps, args.rounds)
    rnn = measure(rnn_steps(), args.steps, args.rounds)
    meta = {
        "command": command_line(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": machine_info(),
        "load0": load0,
        "load1": os.getloadavg()[0],
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    text = render(fusion, rnn, meta) + "".join(f"\n{n}\n" for n in args.note)
    print(text)
    if args.write:
        from benchmarks._results import write_section

        write_section(ROOT / "benchmarks" / "RESULTS.md", SECTION, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
