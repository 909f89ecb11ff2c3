"""Nearest-neighbour search over L2-normalised embeddings behind one small interface.

Scores are inner products, which equal cosine similarities for the unit-length vectors SpLIP produces.
Backends, chosen with `make_index`:

* ``exact``: in-process NumPy matrix product, exact and deterministic; fine up to a few million photos.
* ``faiss-flat`` / ``faiss-hnsw`` / ``faiss-ivf``: FAISS (``pip install faiss-cpu``), exact or approximate.
* ``milvus``: a Milvus collection (``pip install pymilvus milvus-lite``): a local ``.db`` file runs
  embedded Milvus Lite, an ``http://host:19530`` URI reaches a Milvus server or cluster.

Shared rules: ids are strings; adding an id that is already present replaces its vector (the id then
counts as newly inserted); within one `add` call a repeated id keeps its last vector; removing an id
that is absent is a no-op; `search` returns ``min(k, len(index))`` hits per query, best first.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

log = logging.getLogger(__name__)

BACKENDS = ("exact", "faiss-flat", "faiss-hnsw", "faiss-ivf", "milvus")
_BLOCK_ELEMENTS = 1 << 22  # query x gallery scores held at once by ExactIndex (16 MiB of float32)


class EmptyIndexError(ValueError):
    """Search on an index that holds no vectors."""

    def __init__(self, message: str = "the gallery is empty: add photos before searching"):
        super().__init__(message)


@runtime_checkable
class SearchIndex(Protocol):
    """What every backend offers: add/replace, remove and top-k inner-product search by string id."""

    dim: int

    def __len__(self) -> int: ...

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None: ...

    def remove(self, ids: Sequence[str]) -> None: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[list[str]]]: ...


def _as_matrix(vectors, dim: int, what: str) -> np.ndarray:
    """`vectors` as a C-contiguous float32 (n, dim) matrix; a single 1-D vector becomes one row."""
    try:
        array = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} must be a numeric array ({err})") from err
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (n, {dim}), got shape {array.shape}")
    if array.shape[1] != dim:
        raise ValueError(f"{what} have dimension {array.shape[1]} but the index has dimension {dim}")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} contain NaN or infinite values")
    return np.ascontiguousarray(array)


def _as_ids(ids) -> list[str]:
    if isinstance(ids, (str, bytes)):
        raise TypeError("ids must be a sequence of strings, not a single string")
    ids = list(ids)
    bad = next((i for i in ids if not isinstance(i, str)), None)
    if bad is not None:
        raise TypeError(f"ids must be strings, got {type(bad).__name__} {bad!r}")
    return ids


def _prepare_add(ids, vectors, dim: int) -> tuple[list[str], np.ndarray]:
    """Validated ids and vectors for `add`, with repeated ids reduced to their last occurrence."""
    ids = _as_ids(ids)
    vectors = _as_matrix(vectors, dim, "vectors")
    if len(ids) != len(vectors):
        raise ValueError(f"got {len(ids)} ids but {len(vectors)} vectors")
    last = {id_: row for row, id_ in enumerate(ids)}
    if len(last) < len(ids):
        keep = sorted(last.values())
        return [ids[row] for row in keep], vectors[keep]
    return ids, vectors


def _check_k(k: int, size: int) -> int:
    """The number of hits to return, min(k, size); raises for an empty index or k < 1."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if size == 0:
        raise EmptyIndexError()
    return min(int(k), size)


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k best columns (unsorted), taking the lowest column among scores tied at the cut-off."""
    n = scores.shape[1]
    if k >= n:
        cols = np.broadcast_to(np.arange(n), scores.shape).copy()
        return scores.copy(), cols
    cols = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(scores, cols, axis=1).min(axis=1)
    tied = np.flatnonzero((scores >= kth[:, None]).sum(axis=1) > k)
    if tied.size:  # argpartition picks arbitrarily among ties at the cut-off: pick the earliest instead
        sub, cut = scores[tied], kth[tied, None]
        equal = sub == cut
        need = k - (sub > cut).sum(axis=1)
        take = (sub > cut) | (equal & (np.cumsum(equal, axis=1) <= need[:, None]))
        cols[tied] = np.nonzero(take)[1].reshape(len(tied), k)
    return np.take_along_axis(scores, cols, axis=1), cols


class ExactIndex:
    """Exact search by matrix product over an in-memory float32 matrix, scanned in chunks of `chunk` rows.

    Results are sorted by score, highest first; equal scores are ordered by insertion (the earlier
    added id first, a replaced id counting as added at replacement time), so results are reproducible.
    Memory for scores stays bounded by `chunk` whatever the gallery size. `remove` costs O(len).
    """

    def __init__(self, dim: int, chunk: int = 32768):
        if dim < 1 or chunk < 1:
            raise ValueError(f"dim and chunk must be positive, got dim={dim}, chunk={chunk}")
        self.dim = int(dim)
        self.chunk = int(chunk)
        self._matrix = np.empty((0, self.dim), dtype=np.float32)  # capacity grows by doubling
        self._ids: list[str] = []
        self._rows: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        ids, vectors = _prepare_add(ids, vectors, self.dim)
        self.remove([i for i in ids if i in self._rows])
        size, new = len(self._ids), len(ids)
        if size + new > len(self._matrix):
            grown = np.empty((max(size + new, 2 * len(self._matrix)), self.dim), dtype=np.float32)
            grown[:size] = self._matrix[:size]
            self._matrix = grown
        self._matrix[size : size + new] = vectors
        self._rows.update((id_, size + row) for row, id_ in enumerate(ids))
        self._ids.extend(ids)

    def remove(self, ids: Sequence[str]) -> None:
        drop = [self._rows[i] for i in set(_as_ids(ids)) if i in self._rows]
        if not drop:
            return
        keep = np.ones(len(self._ids), dtype=bool)
        keep[drop] = False
        kept = self._matrix[: len(self._ids)][keep]
        self._matrix[: len(kept)] = kept
        self._ids = [id_ for id_, k in zip(self._ids, keep, strict=True) if k]
        self._rows = {id_: row for row, id_ in enumerate(self._ids)}

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[list[str]]]:
        queries = _as_matrix(queries, self.dim, "queries")
        k = _check_k(k, len(self))
        size = len(self._ids)
        scores = np.empty((len(queries), k), dtype=np.float32)
        rows = np.empty((len(queries), k), dtype=np.int64)
        step = max(1, _BLOCK_ELEMENTS // min(self.chunk, size))
        for q0 in range(0, len(queries), step):
            block = queries[q0 : q0 + step]
            best_s = np.empty((len(block), 0), dtype=np.float32)
            best_r = np.empty((len(block), 0), dtype=np.int64)
            for g0 in range(0, size, self.chunk):
                part = self._matrix[g0 : min(g0 + self.chunk, size)]
                s, r = _top_k(block @ part.T, k)
                best_s = np.concatenate([best_s, s], axis=1)
                best_r = np.concatenate([best_r, r + g0], axis=1)
                order = np.lexsort((best_r, -best_s), axis=-1)[:, :k]
                best_s = np.take_along_axis(best_s, order, axis=1)
                best_r = np.take_along_axis(best_r, order, axis=1)
            scores[q0 : q0 + len(block)] = best_s
            rows[q0 : q0 + len(block)] = best_r
        return scores, [[self._ids[r] for r in row] for row in rows]


def auto_ef_search(n: int) -> int:
    """HNSW's default search breadth for `n` vectors: n / 32 within [128, 8192]. Measured on uniform unit vectors
    of dim 512 (m=32): recall@10 0.83 at ef 128 and 0.97 at 256 for 10k; 0.96 at 2048 for 100k."""
    return int(min(8192, max(128, -(-n // 32))))


def _import_faiss():
    try:
        import faiss
    except ImportError as err:
        raise ImportError("the faiss backends need the faiss-cpu package: pip install faiss-cpu") from err
    return faiss


class FaissIndex:
    """FAISS search with inner-product metric; `kind` picks the structure.

    * ``flat``: IndexFlatIP, exact (ties in arbitrary order).
    * ``hnsw``: IndexHNSWFlat graph (`m` links, `ef_construction`, `ef_search`), approximate and fast.
      `ef_search=None` (default) follows the index size, `auto_ef_search(len)`: recall@10 >= 0.95 on uniform
      random vectors (the worst case) at 10k and 100k; clustered embeddings reach it with far less.
      HNSW cannot delete, so removed ids are marked deleted and skipped at search time through an id
      selector; once more than `rebuild_fraction` of the graph is deleted it is rebuilt from the live vectors.
    * ``ivf``: IndexIVFFlat with `nlist` clusters, `nprobe` of them searched; `nprobe=None` (default) searches
      every trained cluster, since uniform vectors need that for recall@10 >= 0.95: IVF only saves time on
      clustered data, where a small `nprobe` (e.g. nlist / 16) keeps recall (`benchmarks/run.py --data clustered`
      sweeps it). Clustering needs training
      data, so until `train_size` vectors (default 39 * nlist, FAISS's minimum) have been added they sit
      in an exact flat index; at that point the clusters are trained on them and they move to the IVF index.

    String ids map to int64 labels held here. Approximate kinds may return fewer than min(k, len) hits
    for a query; those slots score -inf and the query's id list is shorter.
    """

    def __init__(
        self,
        dim: int,
        kind: str = "flat",
        *,
        m: int = 32,
        ef_construction: int = 200,
        ef_search: int | None = None,
        nlist: int = 256,
        nprobe: int | None = None,
        train_size: int | None = None,
        rebuild_fraction: float = 0.25,
    ):
        if kind not in ("flat", "hnsw", "ivf"):
            raise ValueError(f"unknown FAISS index kind {kind!r}: choose 'flat', 'hnsw' or 'ivf'")
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        self._faiss = _import_faiss()
        self.dim, self.kind = int(dim), kind
        self.m, self.ef_construction, self.ef_search = m, ef_construction, ef_search
        self.nlist, self.nprobe = nlist, nprobe
        self.train_size = max(train_size or 39 * nlist, nlist)
        self.rebuild_fraction = rebuild_fraction
        self._labels: dict[str, int] = {}
        self._ids: dict[int, str] = {}
        self._next = 0
        self._trained = kind != "ivf"
        self._live: np.ndarray | None = None  # HNSW only: per-label "not deleted" flags once any removal
        self._index = self._new_hnsw() if kind == "hnsw" else self._new_flat()

    def _new_flat(self):
        return self._faiss.IndexIDMap2(self._faiss.IndexFlatIP(self.dim))

    def _new_hnsw(self):
        index = self._faiss.IndexHNSWFlat(self.dim, self.m, self._faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.ef_construction
        return index

    def __len__(self) -> int:
        return len(self._labels)

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        ids, vectors = _prepare_add(ids, vectors, self.dim)
        self.remove([i for i in ids if i in self._labels])
        labels = np.arange(self._next, self._next + len(ids), dtype=np.int64)
        self._next += len(ids)
        self._labels.update(zip(ids, labels.tolist(), strict=True))
        self._ids.update(zip(labels.tolist(), ids, strict=True))
        if self.kind == "hnsw":  # labels are positions in the graph: _next always equals ntotal
            self._index.add(vectors)
            if self._live is not None:
                self._live = np.concatenate([self._live, np.ones(len(ids), dtype=bool)])
        else:
            self._index.add_with_ids(vectors, labels)
            if not self._trained and len(self) >= self.train_size:
                self._train_ivf()

    def _train_ivf(self) -> None:
        flat = self._index
        labels = self._faiss.vector_to_array(flat.id_map).astype(np.int64)
        vectors = flat.index.reconstruct_n(0, flat.ntotal)
        nlist = min(self.nlist, len(vectors))
        self._quantizer = self._faiss.IndexFlatIP(self.dim)  # kept referenced: the IVF index borrows it
        ivf = self._faiss.IndexIVFFlat(self._quantizer, self.dim, nlist, self._faiss.METRIC_INNER_PRODUCT)
        ivf.train(vectors)
        ivf.add_with_ids(vectors, labels)
        self._index, self._trained = ivf, True
        log.info("trained IVF index with %d clusters on %d vectors", nlist, len(vectors))

    def remove(self, ids: Sequence[str]) -> None:
        labels = [self._labels.pop(i) for i in set(_as_ids(ids)) if i in self._labels]
        if not labels:
            return
        for label in labels:
            del self._ids[label]
        if self.kind != "hnsw":
            self._index.remove_ids(np.asarray(labels, dtype=np.int64))
            return
        if self._live is None:
            self._live = np.ones(self._next, dtype=bool)
        self._live[labels] = False
        if self._next - len(self) > self.rebuild_fraction * self._next:
            self._rebuild_hnsw()

    def _rebuild_hnsw(self) -> None:
        """A fresh graph holding only the live vectors, relabelled 0..n-1 in insertion order."""
        old = np.asarray(sorted(self._ids), dtype=np.int64)
        vectors = self._index.reconstruct_batch(old) if len(old) else np.empty((0, self.dim), np.float32)
        ids = [self._ids[label] for label in old.tolist()]
        self._index, self._live, self._next = self._new_hnsw(), None, 0
        self._labels, self._ids = {}, {}
        if ids:
            self.add(ids, vectors)

    def search_breadth(self) -> dict[str, int]:
        """What a search explores now: {"ef_search": ...} (HNSW), {"nprobe": ...} (trained IVF), else {}."""
        if self.kind == "hnsw":
            return {"ef_search": auto_ef_search(len(self)) if self.ef_search is None else self.ef_search}
        if self.kind == "ivf" and self._trained:
            return {"nprobe": self._index.nlist if self.nprobe is None else self.nprobe}
        return {}

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[list[str]]]:
        faiss = self._faiss
        queries = _as_matrix(queries, self.dim, "queries")
        k = _check_k(k, len(self))
        params = None
        breadth = self.search_breadth()
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(breadth["ef_search"], k))
            if self._live is not None:
                bitmap = np.packbits(self._live, bitorder="little")  # both must outlive the search call
                selector = faiss.IDSelectorBitmap(len(self._live), faiss.swig_ptr(bitmap))
                params.sel = selector
        elif self._trained and self.kind == "ivf":
            params = faiss.SearchParametersIVF(nprobe=breadth["nprobe"])
        scores, labels = self._index.search(queries, k, params=params)
        scores[labels < 0] = -np.inf
        return scores, [[self._ids[label] for label in row if label >= 0] for row in labels.tolist()]


def _import_pymilvus():
    try:
        import pymilvus
    except ImportError as err:
        raise ImportError(
            "the milvus backend needs the pymilvus package (plus milvus-lite for a local .db file): "
            "pip install pymilvus milvus-lite"
        ) from err
    return pymilvus


class MilvusIndex:
    """A Milvus collection with a VARCHAR primary key ``id`` and a FLOAT_VECTOR field ``vector`` (metric IP).

    `uri` is a local ``.db`` path (embedded Milvus Lite, Linux/macOS) or a server URI such as
    ``http://host:19530`` (with `token` ``"user:password"`` or an API key when auth is on); the code path
    is the same. An existing collection is reused (its data persist between runs) after checking its
    dimension and metric, unless `overwrite` drops it first. `index_type` is ``FLAT`` (exact) or
    ``AUTOINDEX`` (Milvus picks an ANN index on a server). Replacing ids uses upsert. The collection uses
    Strong consistency so a search sees every earlier write. Milvus caps k at 16384.
    """

    MAX_K = 16384
    MAX_ID_LENGTH = 4096

    def __init__(
        self,
        dim: int,
        uri: str = "./gallery.db",
        collection: str = "splip_gallery",
        token: str | None = None,
        *,
        index_type: str = "FLAT",
        overwrite: bool = False,
        batch_size: int = 1000,
    ):
        if index_type not in ("FLAT", "AUTOINDEX"):
            raise ValueError(f"unknown Milvus index type {index_type!r}: choose 'FLAT' or 'AUTOINDEX'")
        pymilvus = _import_pymilvus()
        self.dim, self.collection, self.batch_size = int(dim), collection, batch_size
        self._client = pymilvus.MilvusClient(uri=str(uri), token=token or "")
        if overwrite and self._client.has_collection(collection):
            self._client.drop_collection(collection)
        if self._client.has_collection(collection):
            self._check_existing()
            self._client.load_collection(collection)
        else:
            self._create(pymilvus.DataType, index_type)

    def _create(self, data_type, index_type: str) -> None:
        schema = self._client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", data_type.VARCHAR, is_primary=True, max_length=self.MAX_ID_LENGTH)
        schema.add_field("vector", data_type.FLOAT_VECTOR, dim=self.dim)
        params = self._client.prepare_index_params()
        params.add_index(field_name="vector", index_type=index_type, metric_type="IP")
        self._client.create_collection(
            self.collection, schema=schema, index_params=params, consistency_level="Strong"
        )

    def _check_existing(self) -> None:
        fields = {f["name"]: f for f in self._client.describe_collection(self.collection)["fields"]}
        if "id" not in fields or "vector" not in fields:
            raise ValueError(f"Milvus collection {self.collection!r} lacks the 'id' and 'vector' fields")
        existing = int(fields["vector"]["params"]["dim"])
        if existing != self.dim:
            raise ValueError(
                f"Milvus collection {self.collection!r} has dimension {existing} but the index has "
                f"dimension {self.dim}: use another collection name or overwrite=True"
            )
        metric = self._client.describe_index(self.collection, "vector").get("metric_type")
        if metric != "IP":
            raise ValueError(f"Milvus collection {self.collection!r} uses metric {metric}, expected IP")

    def __len__(self) -> int:
        result = self._client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(result[0]["count(*)"])

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        ids, vectors = _prepare_add(ids, vectors, self.dim)
        long = next((i for i in ids if len(i.encode()) > self.MAX_ID_LENGTH), None)
        if long is not None:
            raise ValueError(f"id longer than {self.MAX_ID_LENGTH} bytes: {long[:80]!r}...")
        for start in range(0, len(ids), self.batch_size):
            rows = [
                {"id": id_, "vector": vector}
                for id_, vector in zip(
                    ids[start : start + self.batch_size],
                    vectors[start : start + self.batch_size].tolist(),
                    strict=True,
                )
            ]
            self._client.upsert(self.collection, rows)
        self._client.flush(self.collection)  # unflushed segments are searched ~20-50x slower (benchmarks/run.py)

    def remove(self, ids: Sequence[str]) -> None:
        ids = list(set(_as_ids(ids)))
        for start in range(0, len(ids), self.batch_size):
            self._client.delete(self.collection, ids=ids[start : start + self.batch_size])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[list[str]]]:
        queries = _as_matrix(queries, self.dim, "queries")
        k = _check_k(k, len(self))
        if k > self.MAX_K:
            raise ValueError(f"Milvus returns at most {self.MAX_K} hits per query, asked for {k}")
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids: list[list[str]] = []
        for start in range(0, len(queries), self.batch_size):
            hits = self._client.search(
                self.collection,
                data=queries[start : start + self.batch_size].tolist(),
                limit=k,
                search_params={"metric_type": "IP"},
            )
            for row, query_hits in enumerate(hits, start):
                scores[row, : len(query_hits)] = [hit["distance"] for hit in query_hits]
                ids.append([str(hit["id"]) for hit in query_hits])
        return scores, ids

    def close(self) -> None:
        """Release the client connection (and, for Milvus Lite, the local database file)."""
        self._client.close()


def make_index(backend: str, dim: int, **kwargs) -> SearchIndex:
    """A new index for `backend` (one of BACKENDS); `kwargs` go to the backend's constructor."""
    if backend == "exact":
        return ExactIndex(dim, **kwargs)
    if backend.startswith("faiss-") and backend in BACKENDS:
        return FaissIndex(dim, kind=backend.removeprefix("faiss-"), **kwargs)
    if backend == "milvus":
        return MilvusIndex(dim, **kwargs)
    raise ValueError(f"unknown index backend {backend!r}: choose one of {', '.join(BACKENDS)}")
