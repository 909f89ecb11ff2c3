"""Search backends: exact top-k against a brute-force sort, FAISS and Milvus Lite against exact, bad input."""

import sys

import numpy as np
import pytest

from splip_core.index import (
    BACKENDS,
    EmptyIndexError,
    ExactIndex,
    FaissIndex,
    MilvusIndex,
    SearchIndex,
    make_index,
)

LOCAL_BACKENDS = ["exact", "faiss-flat", "faiss-hnsw", "faiss-ivf"]


def unit(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(rng, n, d, centres=40):
    """Unit vectors around a few centres, like embeddings of photos of a few classes."""
    c = unit(rng, centres, d)
    x = c[rng.integers(0, centres, n)] + 0.35 * unit(rng, n, d)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(gallery, ids, queries, k):
    """Full sort by score desc, ties by insertion order: the reference for ExactIndex."""
    scores = queries @ gallery.T
    order = np.lexsort((np.broadcast_to(np.arange(len(ids)), scores.shape), -scores), axis=-1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), [[ids[i] for i in row] for row in order]


def names(n, prefix="p"):
    return [f"{prefix}{i}" for i in range(n)]


@pytest.mark.parametrize("chunk", [7, 64, 10_000])
@pytest.mark.parametrize("k", [1, 5, 30, 500])
def test_exact_top_k_equals_full_sort_including_ties(chunk, k):
    rng = np.random.default_rng(0)
    # small integer vectors: dot products are exact in float32 and many are tied
    gallery = rng.integers(-1, 2, (300, 6)).astype(np.float32)
    queries = rng.integers(-1, 2, (9, 6)).astype(np.float32)
    ids = names(300)
    index = ExactIndex(6, chunk=chunk)
    index.add(ids, gallery)
    scores, got = index.search(queries, k)
    want_scores, want = brute_force(gallery, ids, queries, min(k, 300))
    assert got == want
    np.testing.assert_array_equal(scores, want_scores)
    assert scores.shape == (9, min(k, 300)) and scores.dtype == np.float32


def test_exact_all_tied_returns_insertion_order():
    index = ExactIndex(3, chunk=4)
    index.add(names(10), np.ones((10, 3)))
    _, ids = index.search(np.ones(3), 6)
    assert ids == [names(6)]


def test_exact_replace_remove_and_batch_duplicates():
    index = ExactIndex(2)
    index.add(["a", "b", "c"], [[1, 0], [1, 0], [0, 1]])
    index.add(["a"], [[1, 0]])  # replaced: same vector, now counts as added last
    assert len(index) == 3
    _, ids = index.search([1, 0], 3)
    assert ids == [["b", "a", "c"]]
    index.add(["d", "d"], [[0, 1], [1, 0]])  # repeated id in one call: the last vector wins
    _, ids = index.search([1, 0], 4)
    assert ids[0][:3] == ["b", "a", "d"] and len(index) == 4
    index.remove(["b", "nope"])
    _, ids = index.search([1, 0], 10)
    assert ids == [["a", "d", "c"]]


def test_faiss_flat_equals_exact():
    rng = np.random.default_rng(1)
    gallery, queries = unit(rng, 2000, 32), unit(rng, 25, 32)
    ids = names(2000)
    exact, flat = ExactIndex(32, chunk=300), FaissIndex(32, "flat")
    for index in (exact, flat):
        index.add(ids, gallery)
        index.remove(ids[::3])
    (s1, i1), (s2, i2) = exact.search(queries, 10), flat.search(queries, 10)
    assert i1 == i2
    np.testing.assert_allclose(s1, s2, atol=1e-5)


def recall_at_10(index, exact, queries):
    _, got = index.search(queries, 10)
    _, want = exact.search(queries, 10)
    return np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got, want, strict=True)])


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_faiss_approximate_recall_with_removals(kind):
    rng = np.random.default_rng(2)
    gallery, queries = clustered(rng, 4000, 32), clustered(rng, 50, 32)
    ids = names(4000)
    index = FaissIndex(32, kind, m=16, ef_search=64, nlist=32, nprobe=8)
    exact = ExactIndex(32)
    for part in (slice(0, 1000), slice(1000, 4000)):  # IVF trains once 39 * 32 vectors are in
        index.add(ids[part], gallery[part])
        exact.add(ids[part], gallery[part])
    assert recall_at_10(index, exact, queries) >= 0.9
    removed = ids[:400]  # 10 %: HNSW marks them deleted, no rebuild yet
    index.remove(removed)
    exact.remove(removed)
    assert len(index) == 3600
    assert recall_at_10(index, exact, queries) >= 0.9
    _, got = index.search(gallery[:400], 10)
    assert not set(removed) & {i for row in got for i in row}
    more = ids[400:2000]  # past the rebuild threshold for HNSW
    index.remove(more)
    exact.remove(more)
    assert len(index) == 2000
    assert recall_at_10(index, exact, queries) >= 0.9


def test_faiss_ivf_before_training_is_exact():
    rng = np.random.default_rng(3)
    gallery, queries = unit(rng, 100, 16), unit(rng, 5, 16)
    ivf, exact = FaissIndex(16, "ivf", nlist=64), ExactIndex(16)
    for index in (ivf, exact):
        index.add(names(100), gallery)
    assert ivf.search(queries, 7)[1] == exact.search(queries, 7)[1]


def test_milvus_lite_round_trip_equals_exact(tmp_path):
    rng = np.random.default_rng(4)
    gallery, queries = unit(rng, 300, 16), unit(rng, 6, 16)
    ids = [f"photos/class {i % 7}/img_{i}.jpg" for i in range(300)]
    db = tmp_path / "gallery.db"
    milvus, exact = MilvusIndex(16, uri=str(db), collection="test_gallery"), ExactIndex(16)
    try:
        for index in (milvus, exact):
            index.add(ids, gallery)
        assert len(milvus) == 300
        (s1, i1), (s2, i2) = milvus.search(queries, 10), exact.search(queries, 10)
        assert i1 == i2
        np.testing.assert_allclose(s1, s2, atol=1e-5)
        for index in (milvus, exact):
            index.remove(ids[:50])
            index.add([ids[60]], -gallery[60])  # replace (upsert)
        assert len(milvus) == 250
        (s1, i1), (s2, i2) = milvus.search(queries, 10), exact.search(queries, 10)
        assert i1 == i2
        np.testing.assert_allclose(s1, s2, atol=1e-5)
        milvus.remove(ids)
        with pytest.raises(EmptyIndexError):
            milvus.search(queries, 3)
    finally:
        milvus.close()
    reopened = MilvusIndex(16, uri=str(db), collection="test_gallery")  # data persist
    try:
        assert len(reopened) == 0
        reopened.add(ids[:3], gallery[:3])
    finally:
        reopened.close()
    with pytest.raises(ValueError, match="dimension 16 but the index has dimension 8"):
        MilvusIndex(8, uri=str(db), collection="test_gallery")
    again = MilvusIndex(16, uri=str(db), collection="test_gallery")
    try:
        assert len(again) == 3
    finally:
        again.close()


@pytest.mark.parametrize("backend", LOCAL_BACKENDS)
def test_wrong_dimension_names_both(backend):
    index = make_index(backend, 8)
    with pytest.raises(ValueError, match="dimension 5 but the index has dimension 8"):
        index.add(["a"], np.ones((1, 5)))
    index.add(["a", "b"], np.ones((2, 8)))
    with pytest.raises(ValueError, match="dimension 9 but the index has dimension 8"):
        index.search(np.ones((3, 9)), 1)


@pytest.mark.parametrize("backend", LOCAL_BACKENDS)
def test_empty_index_and_bad_input(backend):
    index = make_index(backend, 4)
    with pytest.raises(EmptyIndexError, match="the gallery is empty"):
        index.search(np.ones(4), 3)
    with pytest.raises(ValueError, match="3 ids but 2 vectors"):
        index.add(["a", "b", "c"], np.ones((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        index.add(["a"], np.full((1, 4), np.nan))
    with pytest.raises(TypeError, match="single string"):
        index.add("ab", np.ones((2, 4)))
    index.add(["a", "b"], np.eye(4)[:2])
    with pytest.raises(ValueError, match="positive integer"):
        index.search(np.ones(4), 0)
    scores, ids = index.search(np.ones(4), 10)
    assert scores.shape == (1, 2) and sorted(ids[0]) == ["a", "b"]
    index.remove(["a", "b"])
    assert len(index) == 0
    with pytest.raises(EmptyIndexError):
        index.search(np.ones(4), 1)


def test_make_index_choices_and_protocol():
    with pytest.raises(ValueError, match="faiss-hnsw"):
        make_index("annoy", 4)
    with pytest.raises(ValueError, match="'flat', 'hnsw' or 'ivf'"):
        FaissIndex(4, "pq")
    for backend in LOCAL_BACKENDS:
        assert isinstance(make_index(backend, 4), SearchIndex)
    assert set(LOCAL_BACKENDS) < set(BACKENDS)


def test_missing_packages_say_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    monkeypatch.setitem(sys.modules, "pymilvus", None)
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        make_index("faiss-flat", 4)
    with pytest.raises(ImportError, match="pip install pymilvus"):
        make_index("milvus", 4)


def test_ann_defaults_follow_the_index_size_and_keep_recall_on_uniform_vectors():
    """Default ef_search grows with the index (n / 32 within [128, 8192]); default nprobe searches every list."""
    from splip_core.index import auto_ef_search

    assert [auto_ef_search(n) for n in (100, 10_000, 100_000, 10**7)] == [128, 313, 3125, 8192]
    rng = np.random.default_rng(5)
    gallery, queries = unit(rng, 6000, 64), unit(rng, 40, 64)
    exact = ExactIndex(64)
    exact.add(names(6000), gallery)
    for kind in ("hnsw", "ivf"):
        index = FaissIndex(64, kind, nlist=64)
        index.add(names(6000), gallery)
        assert index.search_breadth() == ({"ef_search": 188} if kind == "hnsw" else {"nprobe": 64})
        assert recall_at_10(index, exact, queries) >= 0.95, kind
