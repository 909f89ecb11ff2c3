"""Torch datasets over `Sample` lists: plain images for embedding, and sketch/photo triplets for training.

Unreadable or corrupt files never stop an epoch: they are skipped, recorded in `skipped` (path -> reason) and a
readable sample is returned in their place. With DataLoader workers each worker keeps its own `skipped` record;
the returned sample index (ImageDataset) tells the caller which file it actually got.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from splip_core.data.datasets import DatasetError, Sample, SBIRData
from splip_core.preprocess import InvalidImageError, load_image

log = logging.getLogger(__name__)

Transform = Callable[[Image.Image], Any]


class _SkippingLoader:
    """Opens images with `load_image`, remembering the ones that fail instead of raising."""

    def __init__(self) -> None:
        self.skipped: dict[Path, str] = {}

    def _open(self, sample: Sample) -> Image.Image | None:
        if sample.path in self.skipped:
            return None
        try:
            return load_image(sample.path)
        except InvalidImageError as err:
            self.skipped[sample.path] = str(err)
            log.warning("skipping unreadable image (%d so far): %s", len(self.skipped), err)
            return None


class ImageDataset(_SkippingLoader, Dataset):
    """`samples` as (transform(RGB image), label, index) items, for embedding queries and galleries.

    A file that cannot be read is replaced by the next readable sample (cyclically), and the returned index is that
    sample's, so an evaluation can drop the duplicate; `skipped` lists the files that failed.
    """

    def __init__(self, samples: Sequence[Sample], transform: Transform) -> None:
        super().__init__()
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int, int]:
        n = len(self.samples)
        for offset in range(n):
            i = (index + offset) % n
            image = self._open(self.samples[i])
            if image is not None:
                return self.transform(image), self.samples[i].label, i
        raise DatasetError(f"none of the {n} images can be read (first: {self.samples[0].path})")


class TripletDataset(_SkippingLoader, Dataset):
    """(sketch, positive photo, negative photo) triplets over the sketches of `classes`, for training.

    level="class" (ZS / GZS): positive = a photo of the sketch's class, negative = a photo of another class
    (a uniformly drawn other class, then a photo of it). level="instance" (FG): positive = the sketch's paired
    photo, negative = another photo of the same class (any class when the class has no other photo); only sketches
    with a paired photo are anchors. At class level, `instance_positive` is the probability that a sketch with a
    paired photo takes that photo as its positive instead of a random photo of its class.

    Items are dicts {sketch, positive, negative, label, negative_label}; labels are positions in `classes`, so they
    index a classifier built from those class names. Instance-level items also carry `positive_key` (the sketch's
    instance) and `negative_key` (the negative photo's instance; a negative number for a photo without one), so
    in-batch losses can tell which photos match which sketch. Item `index` of epoch `e` is drawn from a generator
    seeded with (seed, e, index): the same seed, epoch and index always give the same triplet (reproducible resume).
    Call `set_epoch` at the start of every epoch.
    """

    MAX_TRIES = 32

    def __init__(
        self,
        data: SBIRData,
        classes: Sequence[str],
        transform: Transform,
        level: str = "class",
        seed: int = 0,
        instance_positive: float = 0.0,
    ) -> None:
        super().__init__()
        if level not in ("class", "instance"):
            raise ValueError(f"level must be 'class' or 'instance', not {level!r}")
        if not 0.0 <= instance_positive <= 1.0:
            raise ValueError(f"instance_positive is a probability in [0, 1], not {instance_positive}")
        self.instance_positive = instance_positive
        self.classes = list(classes)
        if len(set(self.classes)) != len(self.classes):
            raise DatasetError(
                f"classes listed twice: {sorted({c for c in self.classes if self.classes.count(c) > 1})}"
            )
        self.transform, self.level, self.seed, self.epoch = transform, level, seed, 0
        data.labels_of(self.classes)
        global_label = {name: i for i, name in enumerate(data.classes)}
        self._local = {global_label[name]: i for i, name in enumerate(self.classes)}
        self._photos: dict[int, list[Sample]] = defaultdict(list)
        self._pairs: dict[tuple[int, str | None], list[Sample]] = defaultdict(list)
        for photo in data.photos:
            if photo.label in self._local:
                self._photos[photo.label].append(photo)
                if photo.instance is not None:
                    self._pairs[(photo.label, photo.instance)].append(photo)
        self._pair_key = {pair: i for i, pair in enumerate(self._pairs)}
        self._photo_index = {photo.path: i for i, photo in enumerate(data.photos)}
        no_photos = [data.classes[label] for label in self._local if not self._photos[label]]
        if no_photos:
            raise DatasetError(f"classes without photos cannot form triplets: {no_photos}")
        sketches = [s for s in data.sketches if s.label in self._local]
        if level == "class":
            if len(self.classes) < 2:
                raise DatasetError("class-level triplets need at least two classes for negatives")
            self.anchors = sketches
        else:
            self.anchors = [s for s in sketches if (s.label, s.instance) in self._pairs]
        if not self.anchors:
            raise DatasetError(f"no {'paired ' if level == 'instance' else ''}sketches in classes {self.classes[:5]}")
        self._labels = sorted(self._local)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose triplets `__getitem__` draws."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.anchors)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = np.random.default_rng((self.seed, self.epoch, index))
        anchor = index
        for _ in range(self.MAX_TRIES):
            item = self._triplet(self.anchors[anchor], rng)
            if item is not None:
                return item
            anchor = int(rng.integers(len(self.anchors)))
        raise DatasetError(f"{self.MAX_TRIES} triplets in a row hit unreadable images ({len(self.skipped)} so far)")

    def _triplet(self, sketch: Sample, rng: np.random.Generator) -> dict[str, Any] | None:
        sketch_image = self._open(sketch)
        if sketch_image is None:
            return None
        pair = (sketch.label, sketch.instance)
        if self.level == "class":
            positives = self._photos[sketch.label]
            if self.instance_positive > 0 and pair in self._pairs and rng.random() < self.instance_positive:
                positives = self._pairs[pair]
            negative_label = sketch.label
            while negative_label == sketch.label:
                negative_label = self._labels[int(rng.integers(len(self._labels)))]
            negatives = self._photos[negative_label]
        else:
            positives = self._pairs[pair]
            negatives = [p for p in self._photos[sketch.label] if p.instance != sketch.instance]
            if not negatives:
                negatives = [p for label in self._labels if label != sketch.label for p in self._photos[label]]
        positive = self._draw(positives, rng)
        negative = self._draw(negatives, rng) if negatives else None
        if positive is None or negative is None:
            return None
        item = {
            "sketch": self.transform(sketch_image),
            "positive": self.transform(positive[1]),
            "negative": self.transform(negative[1]),
            "label": self._local[sketch.label],
            "negative_label": self._local[negative[0].label],
        }
        if self.level == "instance":
            item["positive_key"] = self._pair_key[pair]
            negative_pair = (negative[0].label, negative[0].instance)
            item["negative_key"] = self._pair_key.get(negative_pair, -1 - self._photo_index[negative[0].path])
        return item

    def _draw(self, candidates: Sequence[Sample], rng: np.random.Generator) -> tuple[Sample, Image.Image] | None:
        """A random readable candidate and its image (None when every candidate is unreadable)."""
        for i in rng.permutation(len(candidates)):
            image = self._open(candidates[i])
            if image is not None:
                return candidates[i], image
        return None
