"""Ranking photos for a sketch: the paper's cosine, or the cosine plus what both images read as (RankingConfig).

Every ranking here is an inner product of search vectors, so indexes, metrics and caches treat it as a cosine:

    [f ; sqrt(w) a(p)] . [g ; sqrt(w) a(q)]  =  cos(f, g) + w * sum_c a(p)_c a(q)_c

f, g are the sketch's and the photo's features, p and q their distributions over a vocabulary of concept names
(softmax over names of cos(feature, text of "<modality template> <name>") / temperature, with `seen_offset` taken
off the sketch's cosines to the seen classes' names), a(p) = p ("dot") or sqrt(p) ("sqrt", the Bhattacharyya
coefficient). The features stay what the model computes and what caches keep; search vectors derive from them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import MODALITIES, RankingConfig
from .names import class_key


def name_distribution(feats: torch.Tensor, text: torch.Tensor, config: RankingConfig,
                      seen: torch.Tensor | None = None) -> torch.Tensor:
    """(N, V) each image's distribution over the V names whose text features are `text` (V, D); `seen` (V,) marks
    the names whose cosines lose `config.seen_offset` (pass None for a photo)."""
    cos = feats.float() @ text.float().T
    if seen is not None and config.seen_offset:
        cos = cos - config.seen_offset * seen.to(cos.dtype)
    return F.softmax(cos / config.temperature, dim=-1)


def search_vectors(feats: torch.Tensor, text: torch.Tensor, config: RankingConfig,
                   seen: torch.Tensor | None = None) -> torch.Tensor:
    """(N, D + V) vectors whose inner products are the "names" ranking's scores (module docstring)."""
    p = name_distribution(feats, text, config, seen)
    agreement = p if config.agreement == "dot" else p.sqrt()
    return torch.cat([feats.float(), config.weight ** 0.5 * agreement], dim=1)


class Ranker:
    """A model's ranking: search vectors from its features, and what a sketch reads as (for the category guess).

    `Ranker.of(model)` reads the vocabulary's names once with the model's text encoder (or the frozen backbone's,
    `config.text`); for "cosine" the search vectors are the features themselves."""

    def __init__(self, config: RankingConfig, names: list[str] | None = None,
                 text: dict[str, torch.Tensor] | None = None, seen: torch.Tensor | None = None):
        self.config, self.names, self.text = config, list(names or []), dict(text or {})
        self.seen = seen if seen is not None else torch.zeros(len(self.names), dtype=torch.bool)
        if config.method == "names" and set(self.text) != set(MODALITIES):
            raise ValueError("the names ranking needs the vocabulary's text features for both modalities")

    @classmethod
    def of(cls, model, config: RankingConfig | None = None) -> Ranker:
        """The ranking `config` (default: the model's own) for `model` (a SpLIP)."""
        config = config or model.config.ranking
        if config.method == "cosine":
            return cls(config)
        names = list(config.vocabulary or model.config.seen_classes)
        if not names:
            raise ValueError("the names ranking needs a vocabulary (or seen classes) to read images into")
        reader = cls.text_reader(model, config)
        text = {m: reader.encode_text(names, m) for m in MODALITIES}
        seen_keys = {class_key(c) for c in config.seen_names or model.config.seen_classes}
        return cls(config, names, text, torch.tensor([class_key(n) in seen_keys for n in names]))

    @staticmethod
    def text_reader(model, config: RankingConfig | None = None):
        """The model whose text encoder reads names under `config` (default: the model's ranking): the model itself
        ("model", or a model without prompts), else its frozen baseline."""
        config = config or model.config.ranking
        return model if config.text == "model" or not model.config.prompts.use_prompts else model.frozen_baseline()

    @property
    def dim_extra(self) -> int:
        """How many dimensions the search vectors add to the features."""
        return len(self.names) if self.config.method == "names" else 0

    def vectors(self, feats, modality: str) -> torch.Tensor:
        """(N, D + dim_extra) float32 search vectors of (N, D) features (a tensor or an array) of `modality`."""
        feats = torch.as_tensor(feats).float()
        if self.config.method == "cosine":
            return feats
        return search_vectors(feats, self.text[modality], self.config, self.seen if modality == "sketch" else None)

    def distribution(self, feats, modality: str) -> torch.Tensor:
        """(N, V) what each image reads as over the vocabulary (names ranking only)."""
        feats = torch.as_tensor(feats).float()
        return name_distribution(feats, self.text[modality], self.config,
                                 self.seen if modality == "sketch" else None)
