"""Choosing how the offline world ranks photos, on the validation concepts (never on the test split).

The candidates: the paper's cosine, and the names ranking (splip_core/ranking.py) over each vocabulary offered
(the world's concepts, every Quick, Draw! category) at every temperature, weight and agreement of a small grid.
Coordinate ascent: the vocabulary and the mix on the validation doodles' ZS mAP@all; then the seen-name offset
(calibrated stacking) on a GZS view of validation, where the validation doodles play the unseen side and a seeded
subset of the seen concepts' training doodles the seen side, over both sets of concepts' photos, scored by the
harmonic mean of their C@5 (the generalised zero-shot trade-off between the two sides); then the mix again at that
offset. Features are encoded once; each candidate costs its search vectors and the metrics.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np
import torch

from ..config import RankingConfig
from ..data import SBIRData, load_dataset
from ..evaluate import embed_samples
from ..metrics import retrieval_metrics
from ..names import folder_name
from ..ranking import Ranker

TEMPERATURES = (0.01, 0.02, 0.05, 0.1, 0.2)
WEIGHTS = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
AGREEMENTS = ("dot", "sqrt")
OFFSETS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8)
SEEN_QUERIES = 400  # seen training doodles in the GZS validation view


def validation_views(world_root: Path, split: dict, seed: int = 0) -> tuple[SBIRData, SBIRData]:
    """(ZS view: the validation concepts' doodles and photos; GZS view: the same plus the seen concepts' training
    photos and SEEN_QUERIES of their training doodles, the validation concepts marked unseen)."""
    val = load_dataset("folder", world_root / "val", split=[folder_name(c) for c in split["val"]])
    val = val.sketch_domain("doodles")
    train = load_dataset("folder", world_root / "train").sketch_domain("doodles")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(train.sketches), min(SEEN_QUERIES, len(train.sketches)), replace=False)
    seen_doodles = [train.sketches[i] for i in np.sort(pick)]
    offset = len(val.classes)

    def moved(samples):
        return [dataclasses.replace(s, label=s.label + offset) for s in samples]

    gzs = SBIRData(val.classes + train.classes, val.sketches + moved(seen_doodles), val.photos + moved(train.photos),
                   unseen=list(val.classes))
    return val, gzs


class _Views:
    """The validation views' features, encoded once, and each vocabulary's text, read once: a candidate ranking then
    costs only its search vectors and the metrics."""

    def __init__(self, model, world_root: Path, split: dict, vocabularies: dict[str, list[str]],
                 seen_names: list[str], memo: dict):
        zs, gzs = validation_views(world_root, split)
        self.n_val = len(zs.classes)
        sketches, kept = embed_samples(model, gzs.sketches, "sketch", memo=memo)
        photos, shown = embed_samples(model, gzs.photos, "photo", memo=memo)
        self.sketches, self.photos = sketches, photos
        self.sketch_labels = torch.tensor([s.label for s in kept])
        self.photo_labels = torch.tensor([s.label for s in shown])
        self.texts = ("frozen", "model") if model.config.prompts.use_prompts else ("frozen",)
        self.readers = {(name, text): Ranker.of(model, RankingConfig(
            method="names", vocabulary=list(vocabulary), seen_names=list(seen_names), text=text))
            for name, vocabulary in vocabularies.items() for text in self.texts}

    def _ranker(self, vocabulary: str | None, cfg: RankingConfig) -> Ranker:
        if vocabulary is None:
            return Ranker(cfg)
        reader = self.readers[vocabulary, cfg.text]
        return Ranker(cfg, reader.names, reader.text, reader.seen)

    def zs(self, vocabulary: str | None, cfg: RankingConfig) -> float:
        """mAP@all of the validation doodles over the validation photos."""
        ranker, q, g = self._ranker(vocabulary, cfg), self.sketch_labels < self.n_val, self.photo_labels < self.n_val
        return retrieval_metrics(ranker.vectors(self.sketches[q], "sketch"), self.sketch_labels[q],
                                 ranker.vectors(self.photos[g], "photo"), self.photo_labels[g], ks=(), map_at=(),
                                 concept_ks=())["mAP@all"]

    def gzs(self, vocabulary: str | None, cfg: RankingConfig) -> tuple[float, float]:
        """C@5 over every photo of the validation doodles and of the seen training doodles."""
        ranker, unseen = self._ranker(vocabulary, cfg), self.sketch_labels < self.n_val
        gallery = ranker.vectors(self.photos, "photo")
        return tuple(retrieval_metrics(ranker.vectors(self.sketches[rows], "sketch"), self.sketch_labels[rows],
                                       gallery, self.photo_labels, ks=(), map_at=(), concept_ks=(5,))["C@5"]
                     for rows in (unseen, ~unseen))


def choose_ranking(model, world_root: Path, split: dict, vocabularies: dict[str, list[str]], seen_names: list[str],
                   memo: dict | None = None) -> dict:
    """{"ranking": the chosen RankingConfig as a dict, "candidates": each (vocabulary, text encoder, temperature,
    weight, agreement) candidate's validation mAP@all, "offsets": each seen-name offset's GZS validation C@5 (unseen
    side, seen side, harmonic mean)}. `vocabularies`: named name lists to choose among; `seen_names`: the names whose
    drawings trained the model (RankingConfig.seen_names). A model with prompts may read names with the frozen
    backbone's text encoder or its own prompted one.

    Coordinate ascent: the vocabulary, the text encoder and the mix at no offset, then the offset, then the mix
    again at that offset.
    """
    views = _Views(model, world_root, split, vocabularies, seen_names, {} if memo is None else memo)
    candidates: list[dict] = [{"vocabulary": None, "ranking": RankingConfig(),
                               "val_mAP": views.zs(None, RankingConfig())}]

    def mixes(names: list[str], texts: tuple[str, ...], offset: float) -> dict:
        """The best of these mixes at this offset (the first call: or the cosine, which is already a candidate)."""
        start = len(candidates) if offset else 0
        for name, text in itertools.product(names, texts):
            for t, w, agreement in itertools.product(TEMPERATURES, WEIGHTS, AGREEMENTS):
                cfg = RankingConfig(method="names", vocabulary=list(vocabularies[name]), temperature=t, weight=w,
                                    agreement=agreement, seen_offset=offset, seen_names=list(seen_names), text=text)
                candidates.append({"vocabulary": name, "ranking": cfg, "val_mAP": views.zs(name, cfg)})
        return max(candidates[start:], key=lambda c: c["val_mAP"])

    best = mixes(list(vocabularies), views.texts, 0.0)
    offsets = []
    for offset in OFFSETS if best["vocabulary"] is not None else (0.0,):
        unseen, seen = views.gzs(best["vocabulary"], dataclasses.replace(best["ranking"], seen_offset=offset))
        offsets.append({"seen_offset": offset, "unseen_C@5": unseen, "seen_C@5": seen,
                        "harmonic": 2 * unseen * seen / max(unseen + seen, 1e-12)})
    offset = max(offsets, key=lambda o: o["harmonic"])["seen_offset"]
    if offset:
        best = mixes([best["vocabulary"]], (best["ranking"].text,), offset)
    table = [{"vocabulary": c["vocabulary"], "val_mAP": c["val_mAP"],
              **{k: v for k, v in dataclasses.asdict(c["ranking"]).items() if k not in ("vocabulary", "seen_names")}}
             for c in candidates]  # each candidate's knobs, not 230-345 names apiece
    return {"ranking": dataclasses.asdict(best["ranking"]), "vocabulary": best["vocabulary"], "candidates": table,
            "offsets": offsets}


def chosen_val_map(choice: dict) -> float:
    """The validation mAP@all of the ranking a `choose_ranking` result chose, read from its candidates table: the
    best candidate of the chosen method at the chosen offset (the last ascent step's winner)."""
    r = choice["ranking"]
    return max(c["val_mAP"] for c in choice["candidates"]
               if c["method"] == r["method"] and c["seen_offset"] == r["seen_offset"])


def vocabularies(split: dict, categories: list[str]) -> dict[str, list[str]]:
    """The vocabularies a doodle world chooses among: its own concepts, or every Quick, Draw! category."""
    return {"world": [*split["seen"], *split["val"], *split["unseen"]], "quickdraw": list(categories)}


def drawn_names(split: dict) -> list[str]:
    """The names whose drawings trained a doodle world's model: the seen concepts (the prompts' training doodles,
    and in v4 the backbone's) and the categories outside the world that pretraining drew."""
    return [*split["seen"], *split.get("doodles", {}).get("pretrain_categories", [])]
