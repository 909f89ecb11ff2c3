"""Retrieval metrics for SBIR: mAP@all, mAP@K, P@K (category level) and Acc@K (instance level, FG-SBIR).

Queries are processed in blocks of `chunk_size`: one block's similarities to the whole gallery are ranked, reduced
to per-query numbers and dropped, so a 92k x 54k evaluation never holds the full similarity matrix.

Conventions (all values are fractions in [0, 1], not percentages):
  * similarity = dot product of the given (L2-normalised) embeddings; higher ranks first.
  * ties: the ranking is a stable sort, so gallery items with equal similarity keep their gallery order (lower
    index first). Results are deterministic, but unlike sklearn's `average_precision_score` tied items are not
    averaged as a group.
  * AP@all = (1 / R) * sum over relevant positions i of P@i, R = number of relevant gallery items (same label);
    a query with R = 0 has AP 0 (it still counts in the mean).
  * AP@K  = sum over relevant positions i <= K of P@i, divided by the number of relevant items within the top K
    (the SEM-PCYC / SAKE convention: sklearn's AP applied to the top-K list); 0 when none is in the top K.
  * P@K   = relevant items in the top K / K; when the gallery is smaller than K the list is the whole gallery and
    the denominator is the gallery size.
  * C@K   = the query's concept is among the first K concepts when concepts are ranked by their best photo (what a
    person sees in a result page: is the thing I drew among the first K kinds of thing shown?).
  * Acc@K = fraction of queries whose own paired photo ranks within the top K.

Both metric functions also return their per-query values, so `paired_bootstrap` can put a concept-clustered
confidence interval on the difference between two models without ranking the gallery again.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import torch

NOT_IN_GALLERY = 2**31 - 1  # the concept rank of a query whose concept has no photo in the gallery


def _as_embeddings(x: torch.Tensor, name: str) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D (n, dim) tensor, got shape {tuple(x.shape)}")
    return x.float() if not x.is_floating_point() or x.dtype in (torch.float16, torch.bfloat16) else x


def _as_labels(labels, n: int, name: str, device: torch.device) -> torch.Tensor:
    if isinstance(labels, torch.Tensor):
        labels = labels.to(device)
    else:
        labels = torch.as_tensor(np.asarray(labels), device=device)
    if labels.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {tuple(labels.shape)}")
    return labels


def _check_pair(query: torch.Tensor, gallery: torch.Tensor, chunk_size: int) -> None:
    if query.shape[1] != gallery.shape[1]:
        raise ValueError(f"query dim {query.shape[1]} != gallery dim {gallery.shape[1]}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")


def concept_rank_of(sim: torch.Tensor, gallery_concept: torch.Tensor, n_concepts: int,
                    query_concept: torch.Tensor) -> torch.Tensor:
    """(Q,) rank of each query's concept (1 = first) when concepts are ordered by their best photo's similarity;
    NOT_IN_GALLERY where `query_concept` is -1. `sim` (Q, G); `gallery_concept` (G,) codes in 0..n_concepts-1."""
    best = torch.full((len(sim), n_concepts), -torch.inf, dtype=sim.dtype, device=sim.device).scatter_reduce(
        1, gallery_concept.expand_as(sim), sim, "amax")
    rank = (best > best.gather(1, query_concept.clamp(min=0)[:, None])).sum(1) + 1
    return torch.where(query_concept >= 0, rank, NOT_IN_GALLERY)


def retrieval_metrics(
    query_emb: torch.Tensor,
    query_labels,
    gallery_emb: torch.Tensor,
    gallery_labels,
    ks: Sequence[int] = (100, 200),
    map_at: Sequence[int] = (200,),
    chunk_size: int = 512,
    concept_ks: Sequence[int] = (1, 5),
) -> dict:
    """Category-level retrieval quality of sketch queries against a photo gallery (definitions in the module doc).

    Returns {"mAP@all", "mAP@K" for K in map_at, "P@K" for K in ks, "C@K" for K in concept_ks: float;
    "num_queries": int; "per_query": {metric name: float64 array over queries} (AP@all under "AP@all", AP@K under
    "AP@K", P@K under "P@K", C@K under "C@K"); "concept_rank": the rank of each query's concept (1 = first);
    "ap": the AP@all array; "ap_per_class": {query label: mean AP@all of that label's queries}}.
    """
    query_emb = _as_embeddings(query_emb, "query_emb")
    gallery_emb = _as_embeddings(gallery_emb, "gallery_emb").to(query_emb.device, query_emb.dtype)
    _check_pair(query_emb, gallery_emb, chunk_size)
    device = query_emb.device
    query_labels = _as_labels(query_labels, len(query_emb), "query_labels", device)
    gallery_labels = _as_labels(gallery_labels, len(gallery_emb), "gallery_labels", device)
    for k in (*ks, *map_at):
        if k < 1:
            raise ValueError(f"cut-offs must be >= 1, got {k}")
    n_gallery = len(gallery_emb)
    ranks = torch.arange(1, n_gallery + 1, device=device, dtype=torch.float64)
    per_query: dict[str, list[torch.Tensor]] = {"AP@all": []}
    per_query.update({f"AP@{k}": [] for k in map_at})
    per_query.update({f"P@{k}": [] for k in ks})
    concepts, gallery_concept = torch.unique(gallery_labels, return_inverse=True)
    concept_ranks = []

    for start in range(0, len(query_emb), chunk_size):
        sim = query_emb[start : start + chunk_size] @ gallery_emb.T
        match = query_labels[start : start + chunk_size, None] == concepts[None]
        own = torch.where(match.any(1), match.float().argmax(1), -1)
        concept_ranks.append(concept_rank_of(sim, gallery_concept, len(concepts), own))
        order = torch.sort(sim, dim=1, descending=True, stable=True).indices
        del sim
        relevant = gallery_labels[order] == query_labels[start : start + chunk_size, None]
        del order
        hits = relevant.cumsum(dim=1, dtype=torch.int32)
        rows, cols = relevant.nonzero(as_tuple=True)
        precision_at_hits = hits[rows, cols].double() / ranks[cols]
        n_rows = len(relevant)
        totals = hits[:, -1].double()
        ap_sum = torch.zeros(n_rows, dtype=torch.float64, device=device).index_add_(0, rows, precision_at_hits)
        per_query["AP@all"].append(torch.where(totals > 0, ap_sum / totals.clamp(min=1), 0.0))
        for k in map_at:
            top = min(k, n_gallery)
            in_top = cols < top
            ap_sum_k = torch.zeros(n_rows, dtype=torch.float64, device=device).index_add_(
                0, rows[in_top], precision_at_hits[in_top]
            )
            found = hits[:, top - 1].double()
            per_query[f"AP@{k}"].append(torch.where(found > 0, ap_sum_k / found.clamp(min=1), 0.0))
        for k in ks:
            top = min(k, n_gallery)
            per_query[f"P@{k}"].append(hits[:, top - 1].double() / top)

    arrays = {name: torch.cat(parts).cpu().numpy() for name, parts in per_query.items()}
    concept_rank = torch.cat(concept_ranks).cpu().numpy()
    arrays.update({f"C@{k}": (concept_rank <= k).astype(np.float64) for k in concept_ks})
    labels = query_labels.cpu().numpy()
    result: dict = {"mAP@all": float(arrays["AP@all"].mean())}
    result.update({f"mAP@{k}": float(arrays[f"AP@{k}"].mean()) for k in map_at})
    result.update({f"P@{k}": float(arrays[f"P@{k}"].mean()) for k in ks})
    result.update({f"C@{k}": float(arrays[f"C@{k}"].mean()) for k in concept_ks})
    result["concept_rank"] = concept_rank
    result["num_queries"] = len(labels)
    result["per_query"] = arrays
    result["ap"] = arrays["AP@all"]
    result["ap_per_class"] = {
        label.item(): float(arrays["AP@all"][labels == label].mean()) for label in np.unique(labels)
    }
    return result


def _instance_ids(query_instance: Sequence[Hashable], gallery_instance: Sequence[Hashable]):
    """Integer codes for instance ids of any hashable type (strings, ints), shared by queries and gallery."""
    codes: dict[Hashable, int] = {}
    gallery = [codes.setdefault(_plain(x), len(codes)) for x in gallery_instance]
    query = [codes.get(_plain(x), -1) for x in query_instance]
    return torch.tensor(query, dtype=torch.int64), torch.tensor(gallery, dtype=torch.int64)


def _plain(x):
    return x.item() if isinstance(x, (torch.Tensor, np.generic)) else x


def fg_accuracy(
    query_emb: torch.Tensor,
    query_instance: Sequence[Hashable],
    gallery_emb: torch.Tensor,
    gallery_instance: Sequence[Hashable],
    query_labels=None,
    gallery_labels=None,
    ks: Sequence[int] = (1, 5),
    chunk_size: int = 512,
) -> dict:
    """Instance-level Acc@K: how often a sketch's own paired photo (same instance id) ranks in the top K.

    With `query_labels` and `gallery_labels`, each query ranks only the photos of its own category (the
    FG-ZS-SBIR protocol). The rank of the paired photo is 1 + the number of competing photos that score higher,
    or equal with a lower gallery index (the stable-sort tie rule). If several gallery photos share the query's
    instance id, the best ranked one counts. Every query must find its photo in its (restricted) gallery,
    otherwise ValueError.

    Returns {"acc@K" for K in ks: float, "num_queries": int, "rank": int64 array of 1-based ranks,
    "per_query": {"hit@K": float64 array over queries, 1.0 where the paired photo ranks within the top K}}.
    """
    query_emb = _as_embeddings(query_emb, "query_emb")
    gallery_emb = _as_embeddings(gallery_emb, "gallery_emb").to(query_emb.device, query_emb.dtype)
    _check_pair(query_emb, gallery_emb, chunk_size)
    device = query_emb.device
    if len(query_instance) != len(query_emb) or len(gallery_instance) != len(gallery_emb):
        raise ValueError("one instance id per query and per gallery item is required")
    if (query_labels is None) != (gallery_labels is None):
        raise ValueError("give both query_labels and gallery_labels, or neither")
    query_ids, gallery_ids = (t.to(device) for t in _instance_ids(query_instance, gallery_instance))
    if query_labels is not None:
        query_labels = _as_labels(query_labels, len(query_emb), "query_labels", device)
        gallery_labels = _as_labels(gallery_labels, len(gallery_emb), "gallery_labels", device)
    for k in ks:
        if k < 1:
            raise ValueError(f"cut-offs must be >= 1, got {k}")
    positions = torch.arange(len(gallery_emb), device=device)
    all_ranks = []
    for start in range(0, len(query_emb), chunk_size):
        sim = query_emb[start : start + chunk_size] @ gallery_emb.T
        ids = query_ids[start : start + chunk_size]
        allowed = torch.ones_like(sim, dtype=torch.bool)
        if query_labels is not None:
            allowed = gallery_labels[None, :] == query_labels[start : start + chunk_size, None]
        target = (gallery_ids[None, :] == ids[:, None]) & allowed
        missing = ~target.any(dim=1)
        if missing.any():
            first = start + int(missing.nonzero()[0])
            raise ValueError(
                f"{int(missing.sum())} queries (first: #{first}, instance {query_instance[first]!r}) have no "
                "photo with their instance id in their gallery"
            )
        # The best target: highest similarity, then lowest index (stable-sort order).
        target_sim = torch.where(target, sim, -torch.inf).max(dim=1, keepdim=True).values
        target_pos = torch.where(target & (sim == target_sim), positions, len(positions)).min(dim=1).values
        ahead = (sim > target_sim) | ((sim == target_sim) & (positions[None, :] < target_pos[:, None]))
        all_ranks.append(1 + (ahead & allowed).sum(dim=1))
    ranks = torch.cat(all_ranks).cpu().numpy()
    hits = {f"hit@{k}": (ranks <= k).astype(np.float64) for k in ks}
    result: dict = {f"acc@{k}": float(hits[f"hit@{k}"].mean()) for k in ks}
    result["num_queries"] = len(ranks)
    result["rank"] = ranks
    result["per_query"] = hits
    return result


_BOOTSTRAP_BLOCK = 1 << 21  # resampled query slots drawn at once: bounds memory at QuickDraw-Ext scale


def _as_vector(x, name: str) -> np.ndarray:
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per query), got shape {x.shape}")
    return x


def format_difference(difference: dict | None, digits: int = 1) -> str:
    """A `paired_bootstrap` result in points: "+2.8 [+0.4, +5.1]" ("–" when it was not measured). Every table and
    log line that shows a gain with its CI writes it this way."""
    if not difference:
        return "–"
    low, mean, high = (100 * difference[k] for k in ("ci_low", "mean_difference", "ci_high"))
    return f"{mean:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"


def paired_bootstrap(per_query_a, per_query_b, clusters, n_boot: int = 2000, seed: int = 0,
                     level: float = 0.95) -> dict:
    """Two-stage cluster bootstrap confidence interval of mean(a - b) over paired per-query values.

    Queries of one cluster (e.g. views and drawings of one concept) are not independent, so each replicate draws
    the clusters with replacement, then the queries within each drawn cluster with replacement, and takes the mean
    of a - b over all drawn queries. The interval is the percentile interval of `n_boot` replicates at `level`;
    the draws come from numpy's generator seeded with `seed`, so equal inputs give equal intervals.

    Returns {"mean_difference": plain mean of a - b over the queries, "ci_low", "ci_high": float,
    "n_queries", "n_clusters", "n_boot": int}.
    """
    a = _as_vector(per_query_a, "per_query_a").astype(np.float64)
    b = _as_vector(per_query_b, "per_query_b").astype(np.float64)
    clusters = _as_vector(clusters, "clusters")
    if not len(a):
        raise ValueError("paired_bootstrap needs at least one query, got none")
    if not len(a) == len(b) == len(clusters):
        raise ValueError(f"one value per query in each input: got {len(a)} (a), {len(b)} (b), "
                         f"{len(clusters)} (clusters)")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("per-query values must be finite")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")

    diff = a - b
    _, cluster_of = np.unique(clusters, return_inverse=True)
    order = np.argsort(cluster_of, kind="stable")
    sorted_diff = diff[order]  # each cluster's queries are one contiguous run
    sizes = np.bincount(cluster_of)
    starts = np.cumsum(sizes) - sizes
    n_clusters = len(sizes)
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    per_block = max(1, _BOOTSTRAP_BLOCK // len(diff))
    for first in range(0, n_boot, per_block):
        n = min(per_block, n_boot - first)
        drawn = rng.integers(0, n_clusters, size=n * n_clusters)  # stage 1: clusters, n per replicate
        counts = sizes[drawn].reshape(n, n_clusters).sum(axis=1)  # queries in each replicate
        slot_cluster = np.repeat(drawn, sizes[drawn])
        picks = starts[slot_cluster] + rng.integers(0, sizes[slot_cluster])  # stage 2: queries within a cluster
        sums = np.add.reduceat(sorted_diff[picks], np.cumsum(counts) - counts)  # every replicate has >= 1 query
        stats[first : first + n] = sums / counts
    tail = (1 - level) / 2
    low, high = np.quantile(stats, [tail, 1 - tail])
    return {"mean_difference": float(diff.mean()), "ci_low": float(low), "ci_high": float(high),
            "n_queries": len(diff), "n_clusters": n_clusters, "n_boot": n_boot}
