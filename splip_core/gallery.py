"""A searchable gallery of photos: scan a folder, embed through the cache, index, and map hits back to files.

Photos in class sub-folders (``root/<class>/.../photo.jpg``) take the first-level folder name as their
label, which evaluation uses to score retrieval and to split zero-shot (unseen classes only, via
`Gallery.restrict`) from generalised zero-shot (all classes) galleries; loose photos in ``root`` have
no label. The model is only seen through `embed_fn`, so any embedder with the same output works.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from splip_core.cache import EmbeddingCache, EmbedFn
from splip_core.index import SearchIndex, make_index
from splip_core.metrics import concept_rank_of
from splip_core.preprocess import scan_folder

log = logging.getLogger(__name__)


class EmptyGalleryError(ValueError):
    """A gallery with no usable photo to search."""


@dataclass(frozen=True)
class GalleryItem:
    """One photo of the gallery: its path and class label (None for a loose file)."""

    path: str
    label: str | None


@dataclass(frozen=True)
class Hit:
    """One retrieved photo with its cosine score (higher is closer)."""

    path: str
    label: str | None
    score: float


def _label(root: Path, path: str) -> str | None:
    parts = Path(path).relative_to(root).parts
    return parts[0] if len(parts) > 1 else None


class Gallery:
    """Photos, their embeddings (rows of `vectors`) and a search index over them.

    `items[i]` is the photo whose vector is `vectors[i]`; `skipped` lists (path, reason) for files left
    out (non-image files, of which there are `n_non_image`, and unreadable images). `backend` and
    `index_options` choose the index (see `splip_core.index.make_index`). A Milvus-backed gallery owns
    its collection: it is emptied and refilled when the gallery is built (`overwrite=True` unless given).
    """

    def __init__(
        self,
        items: Sequence[GalleryItem],
        vectors: np.ndarray,
        *,
        backend: str = "exact",
        index_options: dict | None = None,
        skipped: Iterable[tuple[str, str]] = (),
        n_non_image: int = 0,
    ):
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(items) == 0:
            raise EmptyGalleryError("the gallery is empty: it needs at least one photo")
        if vectors.ndim != 2 or len(vectors) != len(items):
            raise ValueError(f"{len(items)} photos but vectors of shape {vectors.shape}, expected ({len(items)}, d)")
        self.items = list(items)
        self.vectors = vectors
        self.backend = backend
        self.index_options = dict(index_options or {})
        if backend == "milvus":
            self.index_options.setdefault("overwrite", True)
        self.skipped = list(skipped)
        self.n_non_image = n_non_image
        self.index: SearchIndex = make_index(backend, vectors.shape[1], **self.index_options)
        self.index.add([str(i) for i in range(len(self.items))], vectors)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    @property
    def labels(self) -> list[str]:
        """The distinct class labels present, sorted (loose photos have none)."""
        return sorted({item.label for item in self.items if item.label is not None})

    @classmethod
    def from_items(
        cls,
        paths: Sequence[str | os.PathLike],
        labels: Sequence[str | None] | None,
        vectors: np.ndarray,
        *,
        backend: str = "exact",
        index_options: dict | None = None,
    ) -> Gallery:
        """A gallery from already computed embeddings (`labels=None`: no labels)."""
        labels = [None] * len(paths) if labels is None else list(labels)
        if len(labels) != len(paths):
            raise ValueError(f"got {len(paths)} paths but {len(labels)} labels")
        items = [GalleryItem(str(p), label) for p, label in zip(paths, labels, strict=True)]
        return cls(items, vectors, backend=backend, index_options=index_options)

    @classmethod
    def from_folder(
        cls,
        root: str | os.PathLike,
        embed_fn: EmbedFn,
        model_id: str,
        mode: str,
        cache_dir: str | os.PathLike | None = None,
        backend: str = "exact",
        batch_size: int = 32,
        progress: bool = True,
        progress_callback: Callable[[int, int], None] | None = None,
        index_options: dict | None = None,
        seeds: Sequence[str | os.PathLike] = (),
        to_search: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> Gallery:
        """Scan `root` recursively for photos, embed them (through the cache in `cache_dir`, if any), index.

        `embed_fn(list of PIL images) -> (n, d) float32` is called only for photos not cached for this
        `model_id` and `mode`, nor found in a matching embedding seed (`seeds`, see `splip_core.cache`).
        `to_search` maps the (cached) features to the vectors the index ranks by, e.g. a ranking's search vectors
        (`splip_core.ranking.Ranker.vectors`); None: the features themselves.
        Raises EmptyGalleryError naming the folder when no photo is usable.
        """
        root = Path(os.path.abspath(Path(root).expanduser()))
        if not root.is_dir():
            raise FileNotFoundError(f"gallery folder {root} does not exist or is not a folder")
        cache = EmbeddingCache(cache_dir, model_id, mode, seeds)
        images, others = scan_folder(root, exclude=Path(os.path.abspath(cache_dir)) if cache_dir else None)
        skipped = [(str(p), f"{p}: not an image file ({p.suffix or 'no suffix'})") for p in others]
        if not images:
            raise EmptyGalleryError(
                f"no photos in gallery folder {root}: found 0 image files ({len(others)} other files skipped)"
            )
        result = cache.get_or_compute(
            [str(p) for p in images],
            embed_fn,
            batch_size,
            progress=progress,
            progress_callback=progress_callback,
        )
        skipped += result.skipped
        if not result.paths:
            raise EmptyGalleryError(
                f"no usable photos in gallery folder {root}: all {len(images)} image files were unreadable, "
                f"e.g. {result.skipped[0][1]}"
            )
        items = [GalleryItem(path, _label(root, path)) for path in result.paths]
        gallery = cls(
            items,
            result.vectors if to_search is None else to_search(result.vectors),
            backend=backend,
            index_options=index_options,
            skipped=skipped,
            n_non_image=len(others),
        )
        log.info(
            "gallery %s: %d photos in %d classes (%d embedded now), %d files skipped",
            root,
            len(gallery),
            len(gallery.labels),
            result.n_computed,
            len(skipped),
        )
        return gallery

    def restrict(self, labels: Iterable[str]) -> Gallery:
        """A gallery of only the photos whose label is in `labels`, e.g. the unseen classes for zero-shot.

        Uses the same backend; a Milvus-backed subset gets its own collection (the name plus a suffix).
        Raises ValueError for labels the gallery does not have, so a misspelt class is not silently empty.
        """
        wanted = set(labels)
        unknown = wanted - set(self.labels)
        if unknown:
            raise ValueError(f"labels not in the gallery: {sorted(unknown)}")
        rows = [i for i, item in enumerate(self.items) if item.label in wanted]
        options = dict(self.index_options)
        if self.backend == "milvus":
            digest = hashlib.sha256("\0".join(sorted(wanted)).encode()).hexdigest()[:12]
            options["collection"] = f"{self.index.collection}_{digest}"
        return Gallery([self.items[i] for i in rows], self.vectors[rows], backend=self.backend, index_options=options)

    def concept_rank(self, query_vector: np.ndarray, label: str) -> int | None:
        """Where the class `label` stands for one query when classes are ordered by their best photo's score (1 =
        first), as a person reads a page of results; None when no photo has that label. Exact, whatever the index."""
        if not hasattr(self, "_label_codes"):  # the labelled photos and their class codes, once
            code = {name: i for i, name in enumerate(self.labels)}
            rows = [i for i, item in enumerate(self.items) if item.label is not None]
            self._label_codes = (code, torch.from_numpy(self.vectors[rows]),
                                 torch.tensor([code[self.items[i].label] for i in rows]))
        code, vectors, codes = self._label_codes
        if label not in code:
            return None
        sim = (vectors @ torch.from_numpy(np.asarray(query_vector, dtype=np.float32)))[None]
        return int(concept_rank_of(sim, codes, len(code), torch.tensor([code[label]]))[0])

    def search(self, query_vectors: np.ndarray, k: int = 10) -> list[Hit] | list[list[Hit]]:
        """The `k` best photos (min(k, len) of them), best first.

        One (d,) query vector gives a list of Hit; a (q, d) matrix gives one such list per row.
        Queries should be L2-normalised like the gallery vectors.
        """
        single = np.ndim(query_vectors) == 1
        scores, ids = self.index.search(query_vectors, k)
        hits = [
            [
                Hit(self.items[int(i)].path, self.items[int(i)].label, float(s))
                for s, i in zip(row_s, row_i, strict=False)
            ]
            for row_s, row_i in zip(scores, ids, strict=True)
        ]
        return hits[0] if single else hits
