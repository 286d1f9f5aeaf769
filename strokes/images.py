"""Image-only datasets (HASYv2 and the like): 32×32 rasters with labels and writers.

Some public symbol data has no strokes, only images: HASYv2 was rendered from
pen recordings and ships 168,233 PNGs. :class:`ImageDataset` holds such data
with the same interface as :class:`strokes.StrokeDataset` where it makes
sense (``labels``, ``vocab``, ``classes``, ``class_to_idx``, writers, sources,
``skipped``, ``subset``, ``fingerprint``), so the splits, the
:class:`strokes.training.train.Trainer`, :func:`strokes.training.evaluate.evaluate` and
``strokes bench`` take it too. Only image models can use it: there are no
points to feed a sequence model.

Polarity
--------
Inside the toolkit **ink is bright**: pixel values are floats in ``[0, 1]``
with 1.0 where the pen wrote and 0.0 for the background, exactly what
:func:`rendering.rasterize` produces from strokes. Files often store the
opposite (HASYv2's PNGs are black ink on white), so loaders convert: the
``ink`` option of :func:`strokes.io.hasy.load_hasy` says how the files store
it (``"dark"``, ``"bright"``, or ``"auto"``: the background is the majority
of a symbol's pixels, so a dataset whose images are mostly bright has dark
ink). :func:`rendering.render_image_dataset` renders strokes in the same
convention, which is why a model trained on rendered strokes can be scored on
HASY images and the reverse.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from .dataset import Skipped, sample_position, subset_indices

log = logging.getLogger(__name__)

__all__ = ["ImageDataset", "ImageSample", "FOLD_TRAIN", "FOLD_TEST", "is_image_data"]

#: Role of a sample in ``fold_roles`` of an image dataset, for a fold whose training list holds it.
FOLD_TRAIN = 1
#: Role of a sample in ``fold_roles`` of an image dataset, for a fold whose test list holds it (0: in neither list).
FOLD_TEST = 2


def is_image_data(ds) -> bool:
    """True for image-only data (an :class:`ImageDataset`: no strokes), False for strokes."""
    return isinstance(ds, ImageDataset)


@dataclass(frozen=True)
class ImageSample:
    """One symbol image: ``(S, S)`` float32, ink bright (1.0) on a dark (0.0) background."""

    image: np.ndarray
    label: str
    writer: str | None
    source: str | None
    index: int


class ImageDataset:
    """Labelled symbol images, held as one array.

    Attributes:
        images: ``(N, S, S)`` float32 in ``[0, 1]``, ink bright (see the module
            docstring on polarity).
        labels: ``(N,)`` int64 indices into :attr:`vocab`.
        vocab: sorted class names (LaTeX).
        writer_ids: ``(N,)`` int32 into ``writer_names``, -1 when unknown.
        writer_names: the writers' names (HASYv2: its ``user_id`` values).
        source_ids: ``(N,)`` int32 into ``source_names``, -1 when unknown.
        source_names: where each sample came from (file paths).
        fold_roles: ``(N, K)`` int8 for data that comes with official folds
            (HASYv2: K = 10): :data:`strokes.images.FOLD_TRAIN`,
            :data:`strokes.images.FOLD_TEST` or 0 per fold; None when there are none.
        skipped: records the loader could not use, with reasons.
        name: where the data came from.
        synthetic: True for generated data.
        info: loader counts (``records_in``, ``loaded``, ``skipped``, ...) and
            how the files stored ink (``ink_in_files``).
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        vocab: Sequence[str],
        *,
        writer_ids: np.ndarray | None = None,
        writer_names: Sequence[str] = (),
        source_ids: np.ndarray | None = None,
        source_names: Sequence[str] = (),
        fold_roles: np.ndarray | None = None,
        skipped: Iterable[Skipped] = (),
        name: str = "",
        synthetic: bool = False,
        info: dict | None = None,
    ) -> None:
        self.images = np.asarray(images, dtype=np.float32)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.vocab = list(vocab)
        n = len(self.labels)
        self.writer_ids = np.full(n, -1, np.int32) if writer_ids is None else np.asarray(writer_ids, np.int32)
        self.writer_names = list(writer_names)
        self.source_ids = np.full(n, -1, np.int32) if source_ids is None else np.asarray(source_ids, np.int32)
        self.source_names = list(source_names)
        self.fold_roles = None if fold_roles is None else np.asarray(fold_roles, dtype=np.int8)
        self.skipped = list(skipped)
        self.name = name
        self.synthetic = synthetic
        self.info = dict(info or {})
        self._validate()

    def _validate(self) -> None:
        n, problems = len(self.labels), []
        if self.images.ndim != 3 or self.images.shape[0] != n or self.images.shape[1] != self.images.shape[2]:
            problems.append(f"images must be (N, S, S) with N = {n} labels, got {self.images.shape}")
        elif n and (not np.isfinite(self.images).all() or self.images.min() < 0 or self.images.max() > 1):
            problems.append("image values must be finite and in [0, 1] (ink bright)")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.vocab)):
            problems.append("labels must index into vocab")
        for attr, names in (("writer_ids", self.writer_names), ("source_ids", self.source_names)):
            ids = getattr(self, attr)
            if ids.shape != (n,) or (n and (ids.min() < -1 or ids.max() >= len(names))):
                problems.append(f"{attr} must have one entry per sample, indexing its names or -1")
        if self.fold_roles is not None and (self.fold_roles.ndim != 2 or self.fold_roles.shape[0] != n):
            problems.append(f"fold_roles must be (N, K) with N = {n}, got {self.fold_roles.shape}")
        if problems:
            raise ValueError("inconsistent ImageDataset: " + "; ".join(problems))

    # --------------------------------------------------------------- basics
    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_size(self) -> int:
        """The side ``S`` of the square images, in pixels."""
        return int(self.images.shape[1])

    @property
    def classes(self) -> list[str]:
        """The class names (torchvision style); the same list as :attr:`vocab`."""
        return self.vocab

    @property
    def class_to_idx(self) -> dict[str, int]:
        """Class name to label index."""
        return {c: i for i, c in enumerate(self.vocab)}

    @property
    def num_folds(self) -> int:
        """How many official folds the data has (0 when none)."""
        return 0 if self.fold_roles is None else int(self.fold_roles.shape[1])

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays."""
        arrays = [self.images, self.labels, self.writer_ids, self.source_ids]
        return sum(a.nbytes for a in arrays) + (0 if self.fold_roles is None else self.fold_roles.nbytes)

    def writers(self) -> list[str | None]:
        """The writer name of every sample (None when unknown)."""
        return [None if w < 0 else self.writer_names[w] for w in self.writer_ids]

    def label_names(self) -> list[str]:
        """The class name of every sample."""
        return [self.vocab[i] for i in self.labels]

    def __repr__(self) -> str:
        kind = "synthetic" if self.synthetic else "real"
        s = self.image_size
        return "\n".join(
            [
                f"ImageDataset({kind}: {self.name or '?'})",
                f"    samples: {len(self)}, classes: {len(self.vocab)}, writers: {len(self.writer_names)}",
                f"    images: {s}x{s}, ink bright, official folds: {self.num_folds or 'none'}",
                f"    size: {self.nbytes / 1e6:.1f} MB, skipped: {len(self.skipped)}",
            ]
        )

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            i = sample_position(index, len(self))
            w, s = self.writer_ids[i], self.source_ids[i]
            return ImageSample(
                image=self.images[i],
                label=self.vocab[self.labels[i]],
                writer=None if w < 0 else self.writer_names[w],
                source=None if s < 0 else self.source_names[s],
                index=i,
            )
        if isinstance(index, slice):
            return self.subset(np.arange(len(self))[index])
        return self.subset(index)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def subset(self, indices) -> "ImageDataset":
        """A new dataset of the given samples (indices or a boolean mask), same vocab."""
        idx = subset_indices(indices, len(self))
        return ImageDataset(
            self.images[idx],
            self.labels[idx],
            self.vocab,
            writer_ids=self.writer_ids[idx],
            writer_names=self.writer_names,
            source_ids=self.source_ids[idx],
            source_names=self.source_names,
            fold_roles=None if self.fold_roles is None else self.fold_roles[idx],
            name=self.name,
            synthetic=self.synthetic,
            info={"subset_of": self.name, **{k: v for k, v in self.info.items() if k in ("format", "ink_in_files")}},
        )

    def fold(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The official fold ``k`` (1-based, as HASYv2 names them): ``(train, test)`` sample indices."""
        if self.fold_roles is None:
            raise ValueError(
                f"{self.name} has no official folds; for HASYv2 keep its classification-task/ directory next to "
                "hasy-data-labels.csv, or use another split (writer, random, kfold:K)"
            )
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= self.num_folds:
            raise ValueError(f"fold must be an int from 1 to {self.num_folds}, got {k!r}")
        roles = self.fold_roles[:, k - 1]
        return np.flatnonzero(roles == FOLD_TRAIN), np.flatnonzero(roles == FOLD_TEST)

    def fingerprint(self) -> str:
        """A short content hash (pixels, labels, vocab): same data, same hash."""
        h = hashlib.sha256()
        for a in (self.images, self.labels):
            h.update(np.ascontiguousarray(a).tobytes())
        h.update("\x00".join(self.vocab).encode())
        return h.hexdigest()[:16]

    # ------------------------------------------------------------- conversion
    @classmethod
    def from_rendered(cls, ds, images, *, info: dict | None = None, name: str | None = None) -> "ImageDataset":
        """An image dataset of ``images`` drawn from the stroke dataset ``ds``, one per sample.

        The renderer lives above the data core: :func:`rendering.render_image_dataset`
        draws a stroke dataset and wraps it with this.

        Args:
            ds: the :class:`strokes.StrokeDataset` the images were drawn from.
            images: float32 ``(len(ds), S, S)``, ink bright.
            info: extra provenance for ``info`` (e.g. the render config).
            name: the dataset's name; default ``"<ds.name> (rendered SxS)"``.

        Returns:
            An :class:`ImageDataset` with the same labels, vocab, writers and sources.
        """
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 3 or images.shape[0] != len(ds):
            raise ValueError(f"images must be ({len(ds)}, S, S) for {len(ds)} samples, got shape {images.shape}")
        size = images.shape[1]
        return cls(
            images,
            ds.labels.copy(),
            ds.vocab,
            writer_ids=ds.writer_ids.copy(),
            writer_names=ds.writer_names,
            source_ids=ds.source_ids.copy(),
            source_names=ds.source_names,
            name=name or f"{ds.name} (rendered {size}x{size})",
            synthetic=ds.synthetic,
            info={"rendered_from": ds.name, **(info or {}), "ink_in_files": "bright"},
        )
