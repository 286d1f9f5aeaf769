"""Multi-process training on PyTorch's own engine (``torch.distributed``).

Launch with ``torchrun`` (it sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``)::

    torchrun --standalone --nproc_per_node=2 -m strokes train DATA --model vgg_gap
    strokes bench --ddp --procs 2 ...          # re-launches itself through torchrun

:func:`init_from_env` starts the process group: NCCL on CUDA (one GPU per
process, ``cuda:LOCAL_RANK``), gloo on the CPU. The :class:`strokes.training.train.Trainer`
then wraps the model in ``DistributedDataParallel``, shards every epoch with
a ``DistributedSampler`` (``set_epoch`` each epoch), keeps the *global* batch
size of its config (each rank takes ``batch_size / world_size``), reduces
losses and accuracies over ranks, and lets only rank 0 write checkpoints and
reports. Checkpoints hold the inner module's weights, so they load without DDP.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

log = logging.getLogger(__name__)

__all__ = ["DistInfo", "init_from_env", "current", "launched_by_torchrun", "shutdown", "relaunch_command", "max_weight_difference"]


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0  #: global rank
    world_size: int = 1  #: processes in the job
    local_rank: int = 0  #: rank on this machine (the GPU index on CUDA)
    backend: str | None = None  #: "nccl" or "gloo", None when not distributed

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def current() -> DistInfo:
    """The running process group's ranks, or a single-process :class:`DistInfo`."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), dist.get_backend())


def init_from_env(device: str = "auto") -> DistInfo:
    """Join the process group described by torchrun's environment (no-op without it).

    Args:
        device: ``"auto"`` picks NCCL when CUDA is available, else gloo; ``"cpu"``
            forces gloo; ``"cuda"`` requires GPUs (one per local rank).

    Returns:
        This process's :class:`DistInfo` (a single-process one without torchrun).

    Raises:
        ValueError: when ``device`` asks for CUDA and this rank has no GPU.
    """
    import torch
    import torch.distributed as dist

    if not launched_by_torchrun():
        return DistInfo()
    if dist.is_initialized():
        return current()
    world = int(os.environ["WORLD_SIZE"])
    local = int(os.environ["LOCAL_RANK"])
    use_cuda = device not in ("cpu",) and torch.cuda.is_available()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda under torchrun, but no CUDA GPU is available; use --device cpu (gloo)")
    if use_cuda:
        if local >= torch.cuda.device_count():
            raise ValueError(f"local rank {local} has no GPU: {torch.cuda.device_count()} visible; lower --nproc_per_node")
        torch.cuda.set_device(local)
    backend = "nccl" if use_cuda else "gloo"
    dist.init_process_group(backend=backend)
    info = current()
    if not info.is_main:
        logging.getLogger("strokes").setLevel(logging.WARNING)
    log.info("distributed: rank %d of %d (%s)", info.rank, world, backend)
    return info


def shutdown(sync: bool = False) -> None:
    """Leave the process group (no-op without one).

    Args:
        sync: wait at a barrier first, so that every rank tears down together.
            Pass it after a successful run: a rank that destroys its gloo group
            while a peer is still working can abort at exit. Leave it off on
            an error path, where a failed peer would never reach the barrier.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if sync:
            dist.barrier()
        dist.destroy_process_group()


def relaunch_command(nproc: int, argv: list[str]) -> list[str]:
    """The torchrun command line that runs ``strokes ARGV`` in ``nproc`` processes on this machine."""
    import sys

    if not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"--nproc must be a positive int, got {nproc!r}")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "strokes", *argv]


def max_weight_difference(module) -> float:
    """Largest absolute difference between any weight of ``module`` on this rank and on rank 0.

    Every rank must call it (it broadcasts and all-reduces); every rank gets the
    same answer. 0.0 means the ranks hold identical weights, as DDP promises.
    """
    import torch
    import torch.distributed as dist

    params = [p.detach().reshape(-1).double() for p in module.parameters()]
    flat = torch.cat(params) if params else torch.zeros(1, dtype=torch.float64)
    ref = flat.clone()
    dist.broadcast(ref, src=0)
    diff = (flat - ref).abs().max().reshape(1)
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff[0])
