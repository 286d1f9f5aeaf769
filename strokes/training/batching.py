"""Turn a normalized dataset into model inputs, batch by batch, on the torch device.

:class:`InkTensors` keeps every sample's normalized points as one ragged
tensor on the device (points ``(P, 3)``, ``offsets`` ``(N + 1,)``), so a batch
is gathered, augmented, padded and rendered there, with no Python loop per
sample: on a GPU the images never exist on the host.

:func:`make_inputs` builds the keyword arguments of a model's ``forward`` (see
:mod:`models.registry`): ``points`` ``(B, T, 3)`` with ``lengths`` for sequence
models, ``image`` ``(B, C, S, S)`` for image models, all three for ``both``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _torch():
    import torch

    return torch


@dataclass
class InkTensors:
    """A ragged batch of normalized inks on a device, with optional labels."""

    points: "object"  # (P, 3) float32 tensor [x, y, pen_up]
    offsets: "object"  # (N + 1,) int64 tensor
    labels: "object | None" = None  # (N,) int64 tensor
    image_ink: "InkTensors | None" = None  # the same N inks normalized by a model's image_pipeline, rendered instead of points

    def __len__(self) -> int:
        return int(self.offsets.shape[0]) - 1

    @property
    def device(self):
        return self.points.device

    @classmethod
    def from_arrays(cls, points: np.ndarray, offsets: np.ndarray, labels=None, device="cpu") -> "InkTensors":
        torch = _torch()
        pts = torch.as_tensor(np.ascontiguousarray(points, dtype=np.float32), device=device)
        offs = torch.as_tensor(np.asarray(offsets, dtype=np.int64), device=device)
        lab = None if labels is None else torch.as_tensor(np.asarray(labels, dtype=np.int64), device=device)
        return cls(pts, offs, lab)

    @classmethod
    def from_dataset(cls, ds, pipeline, device="cpu", image_pipeline=None) -> "InkTensors":
        """Normalize ``ds`` with ``pipeline`` (a :class:`strokes.normalize.Pipeline`).

        ``image_pipeline``: a second pipeline whose output :func:`make_inputs` renders
        (kept as ``image_ink``), for models whose image comes from other normalized points
        than their sequence input; None renders ``pipeline``'s points.
        """
        batch = pipeline.apply_dataset(ds)
        out = cls.from_arrays(batch.data, batch.offsets, ds.labels, device)
        if image_pipeline is not None:
            other = image_pipeline.apply_dataset(ds)
            out.image_ink = cls.from_arrays(other.data, other.offsets, None, device)
        return out

    def pin_memory(self) -> "InkTensors":
        return InkTensors(
            self.points.pin_memory(),
            self.offsets.pin_memory(),
            None if self.labels is None else self.labels.pin_memory(),
            None if self.image_ink is None else self.image_ink.pin_memory(),
        )

    def to(self, device, non_blocking: bool = False) -> "InkTensors":
        def move(t):
            return None if t is None else t.to(device, non_blocking=non_blocking)

        return InkTensors(move(self.points), move(self.offsets), move(self.labels), move(self.image_ink))

    def take(self, index) -> "InkTensors":
        """Samples ``index`` (a 1-D int tensor on the same device), in that order."""
        torch = _torch()
        index = torch.as_tensor(index, device=self.offsets.device).to(torch.int64)
        starts = self.offsets[index]  # (B,)
        lens = self.offsets[index + 1] - starts  # (B,)
        new_offsets = torch.zeros(index.shape[0] + 1, dtype=torch.int64, device=index.device)
        torch.cumsum(lens, 0, out=new_offsets[1:])
        total = int(new_offsets[-1])
        # point j of the batch comes from starts[s] + (j - new_offsets[s]) for its sample s
        shift = torch.repeat_interleave(starts - new_offsets[:-1], lens, output_size=total)  # (Pb,)
        src = torch.arange(total, device=index.device) + shift
        labels = None if self.labels is None else self.labels[index]
        image_ink = None if self.image_ink is None else self.image_ink.take(index)
        return InkTensors(self.points[src], new_offsets, labels, image_ink)


@dataclass
class ImageTensors:
    """Ready-made images (an :class:`strokes.images.ImageDataset`) on a device, with optional labels.

    The image-only counterpart of :class:`InkTensors`: :func:`make_inputs`
    passes the images straight to an image model (warped by the augmentation
    when training) instead of rendering points.
    """

    images: "object"  # (N, 1, S, S) float32 tensor, ink bright
    labels: "object | None" = None  # (N,) int64 tensor

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def device(self):
        return self.images.device

    @classmethod
    def from_dataset(cls, ds, device="cpu") -> "ImageTensors":
        torch = _torch()
        images = torch.as_tensor(np.ascontiguousarray(ds.images, dtype=np.float32), device=device).unsqueeze(1)
        return cls(images, torch.as_tensor(np.asarray(ds.labels, dtype=np.int64), device=device))

    def pin_memory(self) -> "ImageTensors":
        return ImageTensors(self.images.pin_memory(), None if self.labels is None else self.labels.pin_memory())

    def to(self, device, non_blocking: bool = False) -> "ImageTensors":
        labels = None if self.labels is None else self.labels.to(device, non_blocking=non_blocking)
        return ImageTensors(self.images.to(device, non_blocking=non_blocking), labels)

    def take(self, index) -> "ImageTensors":
        """Samples ``index`` (a 1-D int tensor), in that order."""
        torch = _torch()
        index = torch.as_tensor(index, device=self.images.device).to(torch.int64)
        return ImageTensors(self.images[index], None if self.labels is None else self.labels[index])


def dataset_tensors(ds, pipeline, device="cpu", image_pipeline=None):
    """:class:`ImageTensors` for an image dataset, else :class:`InkTensors` normalized by ``pipeline``
    (and by ``image_pipeline`` for rendering, when given)."""
    from ..images import is_image_data

    if is_image_data(ds):
        return ImageTensors.from_dataset(ds, device)
    return InkTensors.from_dataset(ds, pipeline, device, image_pipeline=image_pipeline)


def loaded_tensors(ds, loaded, device="cpu"):
    """:func:`dataset_tensors` for a :class:`~strokes.training.checkpoint.LoadedModel`: its pipeline and image pipeline."""
    image_pipeline = loaded.image_pipeline if loaded.input_kind == "both" else None
    return dataset_tensors(ds, loaded.pipeline, device=device, image_pipeline=image_pipeline)


def check_image_input(ds, input_kind: str, render_config, model_name: str = "this model") -> None:
    """Raise ``ValueError`` unless a model taking ``input_kind`` with ``render_config`` can read ``ds``.

    Stroke datasets suit every model. Image datasets (no points) suit image
    models whose render config makes one plane of the images' size.
    """
    from ..images import is_image_data

    if not is_image_data(ds):
        return
    if input_kind != "image":
        import models

        raise ValueError(
            f"{model_name} reads point sequences ({input_kind} input), but {ds.name} holds only images, no strokes; "
            f"use an image model: {', '.join(models.list_models('image'))}"
        )
    if render_config.n_planes != 1 or render_config.size != ds.image_size:
        raise ValueError(
            f"{model_name} expects {render_config.n_planes}-plane {render_config.size}x{render_config.size} renders "
            f"(channels {list(render_config.channels)}), but {ds.name} holds 1-plane {ds.image_size}x{ds.image_size} images; "
            f"train it with render size {ds.image_size} and the single 'ink' channel"
        )


def pad(points, offsets, min_length: int = 1):
    """Ragged ``(P, 3)`` + offsets -> padded ``(B, T, 3)`` (zeros after each length) and lengths ``(B,)``."""
    torch = _torch()
    lengths = offsets[1:] - offsets[:-1]  # (B,)
    n = int(lengths.shape[0])
    t = max(int(lengths.max()) if n else 0, min_length)
    out = torch.zeros((n, t, points.shape[1]), dtype=points.dtype, device=points.device)  # (B, T, 3)
    sample_of = torch.repeat_interleave(torch.arange(n, device=points.device), lengths, output_size=points.shape[0])
    position = torch.arange(points.shape[0], device=points.device) - offsets[:-1][sample_of]  # (P,)
    out[sample_of, position] = points
    return out, lengths


def renormalize(points, lengths, pipeline):
    """Padded points ``(B, T, 3)`` with ``lengths`` ``(B,)`` run through more normalization
    steps (``pipeline``, a :class:`strokes.normalize.Pipeline`), padded again: ``(points, lengths)``.

    Used to feed a distillation teacher whose pipeline is the student's followed by more steps
    (a late fusion's sequence member resamples the ink its image member reads as drawn): the
    teacher then sees the student's batch, augmentation included, normalized as it was trained.
    """
    import numpy as np

    from ..normalize import PenBatch

    torch = _torch()
    p = points.detach().float().cpu().numpy()  # (B, T, 3)
    n = lengths.detach().cpu().numpy().astype(np.int64)  # (B,)
    mask = np.arange(p.shape[1])[None, :] < n[:, None]  # (B, T)
    out = pipeline(PenBatch(np.ascontiguousarray(p[mask]), np.concatenate([[0], np.cumsum(n)]).astype(np.int64)))
    data = torch.from_numpy(np.ascontiguousarray(out.data, dtype=np.float32)).to(points.device)  # (P', 3)
    padded, new_lengths = pad(data, torch.from_numpy(np.asarray(out.offsets, np.int64)).to(points.device))
    return padded.to(points.dtype), new_lengths


def make_inputs(batch: InkTensors, input_kind: str, render_config, *, augment=None, generator=None, channels_last: bool = False) -> dict:
    """The ``forward`` keyword arguments for a model taking ``input_kind``.

    ``augment`` (a :class:`rendering.augment.Augment`) is applied to the points
    first, drawing from ``generator``; sequence and image inputs then see the
    same distorted ink. ``channels_last`` lays images out NHWC in memory (same
    values and shape), which convolutions in that format read fastest.
    """
    out = _make_inputs(batch, input_kind, render_config, augment, generator)
    if channels_last and "image" in out:
        out["image"] = out["image"].contiguous(memory_format=_torch().channels_last)  # (B, C, S, S), NHWC strides
    return out


def _make_inputs(batch, input_kind, render_config, augment, generator) -> dict:
    from rendering import rasterize_torch

    if isinstance(batch, ImageTensors):
        if input_kind != "image":
            raise ValueError(f"image data has no points for a model taking {input_kind!r} input; use an image model")
        images = batch.images
        if augment is not None:
            from rendering.warp import warp_images

            images = warp_images(images, augment, generator=generator)
        return {"image": images}
    points, offsets = batch.points, batch.offsets
    image_ink = batch.image_ink if input_kind == "both" else None
    if augment is not None:
        if image_ink is not None:
            raise ValueError(
                "cannot augment ink normalized by two pipelines (points and image_ink) alike; "
                "train a model with one pipeline, or augment its members separately"
            )
        points = augment(points, offsets, generator=generator)
    out = {}
    if input_kind in ("sequence", "both"):
        out["points"], out["lengths"] = pad(points, offsets)
    if input_kind in ("image", "both"):
        src = batch if image_ink is None else image_ink
        out["image"] = rasterize_torch(points if image_ink is None else src.points, src.offsets, config=render_config)
    if not out:
        raise ValueError(f"unknown input kind {input_kind!r}")
    return out


def batch_seed(seed: int, rank: int, epoch: int, index: int) -> int:
    """The augmentation seed of training batch ``index`` of ``epoch`` on DDP rank ``rank``."""
    return int(np.random.default_rng([seed, rank, epoch, index]).integers(2**62))


class EpochBatches:
    """One epoch of training batches from normalized ink already in memory: a map-style
    dataset for ``torch.utils.data.DataLoader(batches, batch_size=None, num_workers=K)``.

    Item ``i`` takes samples ``order[i * batch_size:(i + 1) * batch_size]`` of
    ``data`` (:class:`InkTensors` or :class:`ImageTensors`), augments them with
    a generator seeded by :func:`batch_seed` ``(seed, rank, epoch, i)`` and
    pads/renders them: ``(inputs, labels)``, ``inputs`` being the ``forward``
    keyword arguments. The result depends only on those numbers, so it is the
    same in the main process and in any worker. Workers get ``data`` by fork
    (copy-on-write, nothing is copied up front).
    """

    def __init__(self, data, order, batch_size: int, input_kind: str, render_config, *, augment=None,
                 seed: int = 0, epoch: int = 0, rank: int = 0, channels_last: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.data = data
        self.order = order  # (n,) int64 tensor of sample indices, on data's device
        self.batch_size = batch_size
        self.input_kind = input_kind
        self.render = render_config
        self.augment = augment
        self.seed, self.epoch, self.rank = seed, epoch, rank
        self.channels_last = channels_last

    def __len__(self) -> int:
        return -(-int(self.order.shape[0]) // self.batch_size)

    def __getitem__(self, i: int):
        torch = _torch()
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} out of range for {len(self)} batches")
        batch = self.data.take(self.order[i * self.batch_size : (i + 1) * self.batch_size])
        gen = None
        if self.augment is not None:
            gen = torch.Generator(device=batch.device).manual_seed(batch_seed(self.seed, self.rank, self.epoch, i))
        inputs = make_inputs(batch, self.input_kind, self.render, augment=self.augment, generator=gen, channels_last=self.channels_last)
        return inputs, batch.labels


class BatchGroups:
    """Consecutive batches of an :class:`EpochBatches` handed over ``group`` at a time, for DataLoader workers.

    Moving a batch from a worker process costs about as much per transfer as per
    byte (shared memory, a file descriptor, a mapping), so a worker sends
    ``group`` batches at once: item ``j`` holds batches ``j * group`` to
    ``(j + 1) * group - 1``, each tensor concatenated along the batch axis when
    the batches agree on its other dimensions (images always do), else as a
    list. :func:`ungroup` gives back the very batches, in order.
    """

    def __init__(self, batches: EpochBatches, group: int = 4, start: int = 0):
        if group < 1:
            raise ValueError(f"group must be >= 1, got {group}")
        self.batches, self.group, self.start = batches, group, start

    def __len__(self) -> int:
        return -(-(len(self.batches) - self.start) // self.group)

    def __getitem__(self, j: int):
        torch = _torch()
        lo = self.start + j * self.group
        parts = [self.batches[i] for i in range(lo, min(lo + self.group, len(self.batches)))]
        sizes = [int(labels.shape[0]) for _, labels in parts]
        keys = list(parts[0][0])
        if all(len({tuple(p[0][k].shape[1:]) for p in parts}) == 1 for k in keys):
            inputs = {k: torch.cat([p[0][k] for p in parts]) for k in keys}  # (sum of B, ...), memory format kept
            return "cat", sizes, inputs, torch.cat([labels for _, labels in parts])
        return "list", sizes, parts, None


def ungroup(item):
    """The batches ``(inputs, labels)`` of one :class:`BatchGroups` item, in order."""
    kind, sizes, inputs, labels = item
    if kind == "list":
        yield from inputs
        return
    start = 0
    for n in sizes:
        yield {k: v[start : start + n] for k, v in inputs.items()}, labels[start : start + n]
        start += n


class BatchStream:
    """Whole training batches, built from a (memory-mapped) dataset: a map-style dataset
    for ``torch.utils.data.DataLoader(stream, batch_size=None, num_workers=K)``.

    Item ``i`` of epoch ``e`` gathers the samples of batch ``i`` from ``ds``,
    normalizes them with ``pipeline``, augments them with a generator seeded by
    ``(seed, e, i)`` and pads/renders them: ``(inputs, labels)`` with
    ``inputs`` the ``forward`` keyword arguments of a model taking
    ``input_kind``. The result depends only on ``(seed, epoch, i)``, so any
    number of workers gives the same batches.

    Worker processes get the dataset by fork; a store opened with
    :func:`strokes.io.store.load_store` is memory-mapped, so they share its
    pages instead of holding copies. Nothing is normalized ahead: memory stays
    at one batch per worker, whatever the dataset size.
    """

    def __init__(self, ds, pipeline, input_kind: str, render_config, *, batch_size: int = 128, augment=None, seed: int = 0):
        import numpy as _np

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if input_kind not in ("sequence", "image", "both"):
            raise ValueError(f"unknown input kind {input_kind!r}")
        self.ds = ds
        self.pipeline = pipeline
        self.input_kind = input_kind
        self.render = render_config
        self.batch_size = batch_size
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.order = _np.arange(len(ds))

    def set_epoch(self, epoch: int) -> None:
        """Shuffle for ``epoch`` (seeded); call before iterating, as with ``DistributedSampler``."""
        self.epoch = epoch
        self.order = np.random.default_rng([self.seed, epoch]).permutation(len(self.ds))

    def __len__(self) -> int:
        return -(-len(self.ds) // self.batch_size)

    def __getitem__(self, i: int):
        torch = _torch()
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} out of range for {len(self)} batches")
        idx = np.sort(self.order[i * self.batch_size : (i + 1) * self.batch_size])
        part = self.ds.subset(idx)
        batch = InkTensors.from_dataset(part, self.pipeline)
        gen = torch.Generator().manual_seed(int(np.random.default_rng([self.seed, self.epoch, i]).integers(2**62)))
        inputs = make_inputs(batch, self.input_kind, self.render, augment=self.augment, generator=gen)
        return inputs, batch.labels
