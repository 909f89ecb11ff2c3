"""Retrieval metrics against sklearn and brute-force references, with ties, chunking and empty classes; the
concept-clustered paired bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from splip_core.metrics import fg_accuracy, paired_bootstrap, retrieval_metrics


def _normalised(rng: np.random.Generator, n: int, dim: int = 16) -> torch.Tensor:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return torch.from_numpy(x / np.linalg.norm(x, axis=1, keepdims=True))


def _integer_embeddings(rng: np.random.Generator, n: int, dim: int = 4) -> torch.Tensor:
    """Small-integer vectors: dot products are exact in float32 and many of them tie."""
    return torch.from_numpy(rng.integers(-2, 3, size=(n, dim)).astype(np.float32))


def _reference(query, query_labels, gallery, gallery_labels, ks, map_at):
    """Plain-Python ranking (stable sort: equal scores keep gallery order) and the metric definitions."""
    sim = (query @ gallery.T).tolist()
    out = {"AP@all": [], **{f"AP@{k}": [] for k in map_at}, **{f"P@{k}": [] for k in ks}, "C@1": [], "C@5": []}
    for row, label in zip(sim, query_labels.tolist(), strict=True):
        best = {}  # each concept's best photo; the query's concept ranks after every concept with a better one
        for score, g in zip(row, gallery_labels.tolist(), strict=True):
            best[g] = max(score, best.get(g, -np.inf))
        rank = 1 + sum(score > best[label] for score in best.values()) if label in best else len(best) + 10
        out["C@1"].append(float(rank <= 1))
        out["C@5"].append(float(rank <= 5))
        order = sorted(range(len(row)), key=lambda j: -row[j])
        rel = [int(gallery_labels[j] == label) for j in order]

        def ap(cut, rel=rel):
            hits, total = 0, 0.0
            for i, r in enumerate(rel[:cut], start=1):
                if r:
                    hits += 1
                    total += hits / i
            return total / hits if hits else 0.0

        n_relevant = sum(rel)
        full = ap(len(rel))
        # AP@all divides by every relevant item; with the whole list that equals the hits found.
        out["AP@all"].append(full if n_relevant else 0.0)
        for k in map_at:
            out[f"AP@{k}"].append(ap(k))
        for k in ks:
            out[f"P@{k}"].append(sum(rel[:k]) / min(k, len(rel)))
    return {name: np.array(values) for name, values in out.items()}


def test_map_all_matches_sklearn_average_precision():
    rng = np.random.default_rng(0)
    n_classes = 12
    query, gallery = _normalised(rng, 400), _normalised(rng, 700)
    query_labels = rng.integers(0, n_classes, 400)
    gallery_labels = np.concatenate([np.arange(n_classes), rng.integers(0, n_classes, 700 - n_classes)])
    result = retrieval_metrics(query, query_labels, gallery, gallery_labels, chunk_size=64)
    scores = (query @ gallery.T).double().numpy()
    expected = np.array(
        [average_precision_score(gallery_labels == label, row) for row, label in zip(scores, query_labels, strict=True)]
    )
    assert np.abs(result["ap"] - expected).max() < 1e-6
    assert result["mAP@all"] == pytest.approx(expected.mean(), abs=1e-6)
    assert result["num_queries"] == 400


@pytest.mark.parametrize("embed", [_normalised, _integer_embeddings])
def test_map_at_k_and_precision_match_brute_force(embed):
    rng = np.random.default_rng(1)
    query, gallery = embed(rng, 60), embed(rng, 90)
    query_labels, gallery_labels = rng.integers(0, 5, 60), rng.integers(0, 5, 90)
    ks, map_at = (1, 10, 200), (5, 30, 200)
    result = retrieval_metrics(query, query_labels, gallery, gallery_labels, ks=ks, map_at=map_at, chunk_size=16)
    expected = _reference(query, query_labels, gallery, gallery_labels, ks, map_at)
    for name, values in expected.items():
        np.testing.assert_allclose(result["per_query"][name], values, atol=1e-12, err_msg=name)
    for k in map_at:
        assert result[f"mAP@{k}"] == pytest.approx(expected[f"AP@{k}"].mean())
    for k in ks:
        assert result[f"P@{k}"] == pytest.approx(expected[f"P@{k}"].mean())


def test_per_query_values_match_brute_force_and_average_exactly_to_the_reported_means():
    rng = np.random.default_rng(5)
    query, gallery = _integer_embeddings(rng, 70), _integer_embeddings(rng, 50)
    query_labels, gallery_labels = rng.integers(0, 8, 70), rng.integers(0, 7, 50)  # label 7: no photo
    result = retrieval_metrics(query, query_labels, gallery, gallery_labels, ks=(10,), map_at=(20,), chunk_size=9)
    expected = _reference(query, query_labels, gallery, gallery_labels, (10,), (20,))
    assert set(result["per_query"]) == {"AP@all", "AP@20", "P@10", "C@1", "C@5"}
    assert 0 < result["C@1"] < result["C@5"] < 1
    for name, values in result["per_query"].items():
        assert values.shape == (70,) and values.dtype == np.float64
        np.testing.assert_allclose(values, expected[name], atol=1e-12, err_msg=name)
        assert float(values.mean()) == result["m" + name if name.startswith("AP") else name]
    assert float(expected["AP@all"].mean()) == pytest.approx(result["mAP@all"], abs=1e-12)


def test_chunked_equals_unchunked():
    rng = np.random.default_rng(2)
    query, gallery = _integer_embeddings(rng, 101), _integer_embeddings(rng, 77)
    query_labels, gallery_labels = rng.integers(0, 6, 101), rng.integers(0, 6, 77)
    whole = retrieval_metrics(query, query_labels, gallery, gallery_labels, ks=(5, 50), map_at=(10,), chunk_size=10_000)
    for chunk_size in (1, 7, 100):
        part = retrieval_metrics(
            query, query_labels, gallery, gallery_labels, ks=(5, 50), map_at=(10,), chunk_size=chunk_size
        )
        for name in whole["per_query"]:
            np.testing.assert_array_equal(part["per_query"][name], whole["per_query"][name])
        assert part["ap_per_class"] == whole["ap_per_class"]


def test_known_values_on_a_hand_made_ranking():
    # Similarities 0.9 > 0.8 > 0.7 > 0.6; relevance pattern 1, 0, 1, 0.
    gallery = torch.tensor([[0.9], [0.8], [0.7], [0.6]])
    result = retrieval_metrics(torch.tensor([[1.0]]), [3], gallery, [3, 1, 3, 2], ks=(2, 3), map_at=(1, 2, 4))
    assert result["mAP@all"] == pytest.approx((1 + 2 / 3) / 2)
    assert result["mAP@1"] == pytest.approx(1.0)
    assert result["mAP@2"] == pytest.approx(1.0)
    assert result["mAP@4"] == pytest.approx((1 + 2 / 3) / 2)
    assert result["P@2"] == pytest.approx(0.5)
    assert result["P@3"] == pytest.approx(2 / 3)


def test_ties_are_broken_by_gallery_order():
    query = torch.tensor([[1.0, 0.0]])
    same = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    # Both gallery items score 1.0; the one first in the gallery ranks first.
    relevant_second = retrieval_metrics(query, [1], same, [0, 1], ks=(1,), map_at=(1,))
    relevant_first = retrieval_metrics(query, [1], same, [1, 0], ks=(1,), map_at=(1,))
    assert relevant_second["mAP@all"] == pytest.approx(0.5)
    assert relevant_second["P@1"] == 0.0 and relevant_second["mAP@1"] == 0.0
    assert relevant_first["mAP@all"] == pytest.approx(1.0)
    assert relevant_first["P@1"] == 1.0


def test_query_whose_class_has_no_photos_scores_zero_and_counts():
    query = torch.eye(3)
    gallery = torch.eye(3)[:2]
    result = retrieval_metrics(query, [0, 1, 2], gallery, [0, 1], ks=(1,), map_at=(1,))
    np.testing.assert_allclose(result["ap"], [1.0, 1.0, 0.0])
    assert result["mAP@all"] == pytest.approx(2 / 3)
    assert result["P@1"] == pytest.approx(2 / 3)
    assert result["ap_per_class"] == {0: 1.0, 1: 1.0, 2: 0.0}


def test_gallery_smaller_than_k_uses_the_whole_gallery():
    result = retrieval_metrics(torch.eye(2), [0, 0], torch.eye(2), [0, 0], ks=(100,), map_at=(200,))
    assert result["P@100"] == 1.0 and result["mAP@200"] == 1.0


def test_per_class_ap_is_the_mean_of_its_queries():
    rng = np.random.default_rng(3)
    query, gallery = _normalised(rng, 50), _normalised(rng, 40)
    query_labels, gallery_labels = rng.integers(0, 4, 50), rng.integers(0, 4, 40)
    result = retrieval_metrics(query, query_labels, gallery, gallery_labels)
    for label, value in result["ap_per_class"].items():
        assert value == pytest.approx(result["ap"][query_labels == label].mean())
    assert set(result["ap_per_class"]) == set(np.unique(query_labels).tolist())


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="query dim"):
        retrieval_metrics(torch.zeros(2, 3), [0, 1], torch.zeros(2, 4), [0, 1])
    with pytest.raises(ValueError, match="query_labels"):
        retrieval_metrics(torch.zeros(2, 3), [0], torch.zeros(2, 3), [0, 1])
    with pytest.raises(ValueError, match="non-empty"):
        retrieval_metrics(torch.zeros(2, 3), [0, 1], torch.zeros(0, 3), [])


def _fg_reference(query, query_ids, gallery, gallery_ids, query_labels=None, gallery_labels=None):
    ranks = []
    for i, row in enumerate((query @ gallery.T).tolist()):
        allowed = [j for j in range(len(row)) if query_labels is None or gallery_labels[j] == query_labels[i]]
        order = sorted(allowed, key=lambda j: -row[j])
        ranks.append(1 + next(pos for pos, j in enumerate(order) if gallery_ids[j] == query_ids[i]))
    return np.array(ranks)


@pytest.mark.parametrize("embed", [_normalised, _integer_embeddings])
@pytest.mark.parametrize("restrict", [False, True])
def test_fg_accuracy_matches_brute_force(embed, restrict):
    rng = np.random.default_rng(4)
    n_photos = 80
    gallery = embed(rng, n_photos)
    gallery_ids = [f"photo{j}" for j in range(n_photos)]
    gallery_labels = rng.integers(0, 4, n_photos)
    pick = rng.integers(0, n_photos, 150)
    query = gallery[pick] + 0.8 * embed(rng, 150)
    query_ids = [gallery_ids[j] for j in pick]
    labels = (gallery_labels[pick], gallery_labels) if restrict else (None, None)
    result = fg_accuracy(query, query_ids, gallery, gallery_ids, *labels, ks=(1, 5, 10), chunk_size=32)
    expected = _fg_reference(query, query_ids, gallery, gallery_ids, *labels)
    np.testing.assert_array_equal(result["rank"], expected)
    for k in (1, 5, 10):
        assert result[f"acc@{k}"] == pytest.approx((expected <= k).mean())
        np.testing.assert_array_equal(result["per_query"][f"hit@{k}"], (expected <= k).astype(float))
        assert float(result["per_query"][f"hit@{k}"].mean()) == result[f"acc@{k}"]
    assert 0 < result["acc@1"] < result["acc@10"]


def test_fg_category_restriction_removes_other_classes_from_the_ranking():
    query = torch.tensor([[1.0, 0.0]])
    gallery = torch.tensor([[1.0, 0.0], [0.8, 0.6]])  # another-class photo scores higher than the paired one
    ids = ["other", "mine"]
    assert fg_accuracy(query, ["mine"], gallery, ids, ks=(1,))["acc@1"] == 0.0
    restricted = fg_accuracy(query, ["mine"], gallery, ids, [7], [3, 7], ks=(1,))
    assert restricted["acc@1"] == 1.0 and restricted["rank"].tolist() == [1]


def test_fg_tie_counts_earlier_gallery_items_first():
    query = torch.tensor([[1.0, 0.0]])
    gallery = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert fg_accuracy(query, ["b"], gallery, ["a", "b"], ks=(1,))["rank"].tolist() == [2]
    assert fg_accuracy(query, ["a"], gallery, ["a", "b"], ks=(1,))["rank"].tolist() == [1]


def test_fg_query_without_its_photo_is_an_error():
    with pytest.raises(ValueError, match="no photo with their instance id"):
        fg_accuracy(torch.eye(2), ["a", "z"], torch.eye(2), ["a", "b"])
    # The paired photo exists but in another category: also missing from the restricted gallery.
    with pytest.raises(ValueError, match="no photo with their instance id"):
        fg_accuracy(torch.eye(2), ["a", "b"], torch.eye(2), ["a", "b"], [0, 0], [0, 1])


def _clustered_scores(rng: np.random.Generator, n_clusters: int = 30, per_cluster: int = 20, gain: float = 0.1):
    """Per-query scores of two models whose difference has a shared per-cluster part (concept difficulty)."""
    clusters = np.repeat(np.arange(n_clusters), per_cluster)
    shared = rng.normal(0, 0.05, n_clusters)[clusters]
    b = rng.uniform(0.2, 0.6, len(clusters))
    a = b + gain + shared + rng.normal(0, 0.05, len(clusters))
    return a, b, clusters


def test_bootstrap_is_reproducible_for_a_seed():
    a, b, clusters = _clustered_scores(np.random.default_rng(6))
    first = paired_bootstrap(a, b, clusters, n_boot=500, seed=3)
    assert paired_bootstrap(a, b, clusters, n_boot=500, seed=3) == first
    other = paired_bootstrap(a, b, clusters, n_boot=500, seed=4)
    assert (other["ci_low"], other["ci_high"]) != (first["ci_low"], first["ci_high"])
    assert other["mean_difference"] == first["mean_difference"]
    # Tensors and string cluster names work like arrays and integers (clusters are coded in sorted order).
    names = [f"concept{c:02d}" for c in clusters]  # sorts like the integers, so the same draws
    assert paired_bootstrap(torch.from_numpy(a), torch.from_numpy(b), names, n_boot=500, seed=3) == first


def test_large_difference_excludes_zero_and_identical_inputs_give_zero():
    a, b, clusters = _clustered_scores(np.random.default_rng(7), gain=0.2)
    result = paired_bootstrap(a, b, clusters)
    assert result["mean_difference"] == pytest.approx((a - b).mean(), abs=1e-15)
    assert 0 < result["ci_low"] < result["mean_difference"] < result["ci_high"]
    assert result["ci_high"] - result["ci_low"] < 0.1
    assert (result["n_queries"], result["n_clusters"], result["n_boot"]) == (600, 30, 2000)
    flipped = paired_bootstrap(b, a, clusters)
    assert flipped["ci_high"] < 0
    same = paired_bootstrap(a, a, clusters)
    assert (same["mean_difference"], same["ci_low"], same["ci_high"]) == (0.0, 0.0, 0.0)


def test_one_huge_cluster_widens_the_interval_beyond_the_query_level_one():
    # One concept with 500 queries where a wins, nine concepts of 5 queries where b wins: the 545 queries are
    # really ten units, and whether the big one is drawn 0, 1 or 3 times moves the mean a lot.
    a = np.concatenate([np.ones(500), np.zeros(45)])
    b = 1 - a
    clusters = np.concatenate([np.zeros(500, dtype=int), np.repeat(np.arange(1, 10), 5)])
    clustered = paired_bootstrap(a, b, clusters, seed=1)
    naive = paired_bootstrap(a, b, np.arange(len(a)), seed=1)  # every query its own cluster
    assert clustered["mean_difference"] == naive["mean_difference"]
    assert naive["n_clusters"] == 545 and clustered["n_clusters"] == 10
    assert clustered["ci_high"] - clustered["ci_low"] > 5 * (naive["ci_high"] - naive["ci_low"])
    assert clustered["ci_low"] < 0 < naive["ci_low"]


def test_single_cluster_still_resamples_its_queries():
    rng = np.random.default_rng(8)
    a, b = rng.random(200), rng.random(200)
    result = paired_bootstrap(a, b, np.zeros(200), n_boot=300)
    assert result["n_clusters"] == 1 and result["ci_low"] < result["mean_difference"] < result["ci_high"]


def test_bootstrap_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one query"):
        paired_bootstrap([], [], [])
    with pytest.raises(ValueError, match=r"got 3 \(a\), 2 \(b\), 3 \(clusters\)"):
        paired_bootstrap([1, 2, 3], [1, 2], [0, 0, 1])
    with pytest.raises(ValueError, match="clusters"):
        paired_bootstrap([1, 2], [1, 2], [0])
    with pytest.raises(ValueError, match="1-D"):
        paired_bootstrap(np.zeros((2, 2)), np.zeros((2, 2)), [0, 1])
    with pytest.raises(ValueError, match="finite"):
        paired_bootstrap([1.0, np.nan], [0.0, 0.0], [0, 1])
    with pytest.raises(ValueError, match="n_boot"):
        paired_bootstrap([1.0], [0.0], [0], n_boot=0)
    with pytest.raises(ValueError, match="level"):
        paired_bootstrap([1.0], [0.0], [0], level=1.0)


def test_a_difference_reads_as_points_with_its_ci():
    from splip_core import format_difference

    d = {"mean_difference": 0.028, "ci_low": 0.004, "ci_high": 0.051, "n_boot": 2000}
    assert format_difference(d) == "+2.8 [+0.4, +5.1]"
    assert format_difference({**d, "ci_low": -0.012}, digits=2) == "+2.80 [-1.20, +5.10]"
    assert format_difference(None) == format_difference({}) == "–"
