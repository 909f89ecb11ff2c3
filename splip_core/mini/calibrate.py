"""Choosing how the offline world ranks photos, on the validation concepts (never on the test split).

First the names ranking's temperature, weight and agreement (splip_core/ranking.py) on the validation doodles' ZS
mAP@all, the paper's cosine among the candidates; then the seen-name offset (calibrated stacking) on a GZS view of
validation: the validation doodles play the unseen side and a seeded subset of the seen concepts' training doodles
the seen side, over both sets of concepts' photos, scored by the harmonic mean of their C@5 (the generalised
zero-shot trade-off between the two sides).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..config import RankingConfig
from ..data import SBIRData, load_dataset
from ..evaluate import evaluate
from ..names import folder_name

TEMPERATURES = (0.01, 0.02, 0.05, 0.1, 0.2)
WEIGHTS = (0.3, 1.0, 3.0, 10.0)
AGREEMENTS = ("dot", "sqrt")
OFFSETS = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3)
SEEN_QUERIES = 400  # seen training doodles in the GZS validation view


def validation_views(world_root: Path, split: dict, seed: int = 0) -> tuple[SBIRData, SBIRData]:
    """(ZS view: the validation concepts' doodles and photos; GZS view: the same plus the seen concepts' training
    photos and SEEN_QUERIES of their training doodles, the validation concepts marked unseen)."""
    val = load_dataset("folder", world_root / "val", split=[folder_name(c) for c in split["val"]])
    val = val.sketch_domain("doodles")
    train = load_dataset("folder", world_root / "train").sketch_domain("doodles")
    rng = np.random.default_rng(seed)
    seen_doodles = [train.sketches[i] for i in np.sort(rng.choice(len(train.sketches), SEEN_QUERIES, replace=False))]
    offset = len(val.classes)

    def moved(samples):
        return [dataclasses.replace(s, label=s.label + offset) for s in samples]

    gzs = SBIRData(val.classes + train.classes, val.sketches + moved(seen_doodles), val.photos + moved(train.photos),
                   unseen=list(val.classes))
    return val, gzs


def _score(model, data: SBIRData, setting: str, ranking: RankingConfig, memo: dict, queries: str = "unseen",
           metric: str = "mAP@all") -> float:
    return evaluate(model, data, setting, baseline=False, bootstrap=0, gzs_queries=queries, memo=memo,
                    ranking=ranking)["splip"][metric]


def choose_ranking(model, world_root: Path, split: dict, vocabulary: list[str], memo: dict | None = None) -> dict:
    """{"ranking": the chosen RankingConfig as a dict, "candidates": every candidate's validation scores}."""
    memo = {} if memo is None else memo
    zs, gzs = validation_views(world_root, split)
    cosine = RankingConfig()
    candidates = [{"ranking": dataclasses.asdict(cosine), "val_mAP": _score(model, zs, "zs", cosine, memo)}]
    for t in TEMPERATURES:
        for w in WEIGHTS:
            for agreement in AGREEMENTS:
                cfg = RankingConfig("names", list(vocabulary), t, w, 0.0, agreement)
                candidates.append({"ranking": dataclasses.asdict(cfg), "val_mAP": _score(model, zs, "zs", cfg, memo)})
    best = max(candidates, key=lambda c: c["val_mAP"])
    chosen = RankingConfig(**best["ranking"])
    offsets = []
    for offset in OFFSETS if chosen.method == "names" else (0.0,):
        cfg = dataclasses.replace(chosen, seen_offset=offset)
        unseen, seen = (_score(model, gzs, "gzs", cfg, memo, queries, "C@5") for queries in ("unseen", "seen"))
        offsets.append({"seen_offset": offset, "unseen_C@5": unseen, "seen_C@5": seen,
                        "harmonic": 2 * unseen * seen / max(unseen + seen, 1e-12)})
    pick = max(offsets, key=lambda o: o["harmonic"])
    chosen = dataclasses.replace(chosen, seen_offset=pick["seen_offset"])
    return {"ranking": dataclasses.asdict(chosen), "candidates": candidates, "offsets": offsets}
