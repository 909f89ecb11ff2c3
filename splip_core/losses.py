"""SpLIP's training objective: L = L_triplet(adaptive margin) + alpha L_class + beta L_cjs (spec section 3),
plus an optional in-batch contrastive term (not in the paper; weight `contrastive_weight`).

L_class   cross-entropy of an image against the seen-class prompts of its modality, from the same prompted text pass
          that builds the visual prompts (temperature in the config); with `text_class_sample` = k, against the k
          classes of that image's sampled subset (its own class first).
L_triplet sketch anchor, positive and negative photos; cosine distance; margin mu = cos(t(c+), t(c-)) from frozen
          CLIP text "a photo of a {c}" (detached), or a fixed margin (ablation; also used for same-class FG pairs);
          optionally clamped from below (`margin_min`). The negative is the sampled one, or with
          `triplet_mining="batch_hard"` the hardest non-matching photo among the batch's positives and negatives.
L_con     (optional) symmetric multi-positive InfoNCE between the batch's sketches and positive photos.
L_cjs     conditional cross-modal jigsaw: a sketch shuffled by permutation y is paired with the unshuffled sketch,
          the positive photo or the negative photo; a small transformer F_js predicts y. CE on the sketch pair plus a
          hinge asking the positive photo to unscramble the sketch better than the negative photo.
Every term can be switched off in SpLIPConfig for the ablations.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import SpLIPConfig
from .model import SpLIP


def max_hamming_permutations(grid: int, count: int, seed: int = 0, pool: int = 4000) -> torch.Tensor:
    """(count, grid*grid) tile permutations chosen greedily to be far apart in Hamming distance (Noroozi & Favaro).

    The identity is never included (a "shuffled" sketch must differ from the original); all permutations are used
    when there are fewer than `count`.
    """
    tiles = grid * grid
    rng = np.random.default_rng(seed)
    if math.factorial(tiles) <= pool:
        candidates = np.array(list(itertools.permutations(range(tiles)))[1:])
    else:
        candidates = np.unique(np.array([rng.permutation(tiles) for _ in range(pool)]), axis=0)
        candidates = candidates[(candidates != np.arange(tiles)).any(1)]
    count = min(count, len(candidates))
    chosen = [int(rng.integers(len(candidates)))]
    min_dist = (candidates != candidates[chosen[0]]).sum(1)
    while len(chosen) < count:
        nxt = int(np.argmax(min_dist))
        chosen.append(nxt)
        min_dist = np.minimum(min_dist, (candidates != candidates[nxt]).sum(1))
    return torch.as_tensor(candidates[chosen], dtype=torch.long)


def shuffle_tiles(pixels: torch.Tensor, perms: torch.Tensor, grid: int) -> torch.Tensor:
    """Rearrange each image's grid x grid tiles: output tile i is input tile perms[b, i]. Borders left by an image
    size not divisible by `grid` stay in place."""
    b, c, h, w = pixels.shape
    th, tw = h // grid, w // grid
    core = pixels[:, :, : th * grid, : tw * grid]
    tiles = core.reshape(b, c, grid, th, grid, tw).permute(0, 2, 4, 1, 3, 5).reshape(b, grid * grid, c, th, tw)
    tiles = torch.gather(tiles, 1, perms.view(b, -1, 1, 1, 1).expand_as(tiles))
    core = tiles.reshape(b, grid, grid, c, th, tw).permute(0, 3, 1, 4, 2, 5).reshape(b, c, th * grid, tw * grid)
    out = pixels.clone()
    out[:, :, : th * grid, : tw * grid] = core
    return out


class JigsawSolver(nn.Module):
    """F_js: two pooled embeddings as a 2-token sequence -> 2-layer transformer encoder -> permutation logits."""

    def __init__(self, dim: int, n_permutations: int, layers: int, heads: int):
        super().__init__()
        heads = math.gcd(dim, heads)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.position = nn.Parameter(torch.zeros(2, dim))
        self.head = nn.Linear(2 * dim, n_permutations)

    def forward(self, first: torch.Tensor, shuffled: torch.Tensor) -> torch.Tensor:
        x = self.encoder(torch.stack([first, shuffled], dim=1) + self.position)
        return self.head(x.flatten(1))


def class_loss(features: torch.Tensor, class_text: torch.Tensor, labels: torch.Tensor,
               temperature: float) -> torch.Tensor:
    """CE over seen classes; `class_text` is (B, C, D) per-image or (1, C, D) shared."""
    if class_text.shape[0] == 1:
        logits = features @ class_text[0].T
    else:
        logits = torch.einsum("bd,bcd->bc", features, class_text)
    return F.cross_entropy(logits / temperature, labels)


def triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                 margin: torch.Tensor) -> torch.Tensor:
    """mean(max(0, d(a, p) - d(a, n) + margin)) with cosine distance on L2-normalised features."""
    d_pos = 1 - (anchor * positive).sum(-1)
    d_neg = 1 - (anchor * negative).sum(-1)
    return F.relu(d_pos - d_neg + margin).mean()


def contrastive_loss(sketch: torch.Tensor, photo: torch.Tensor, sketch_keys: torch.Tensor, photo_keys: torch.Tensor,
                     temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE with multi-positive targets: sketch i and photo j match when their keys are equal.

    Each direction is the cross-entropy between softmax(cos / temperature) and the uniform distribution over the
    matching items (CLIP's loss when every key is unique); the result is the mean of both directions.
    """
    logits = sketch @ photo.T / temperature
    match = (sketch_keys[:, None] == photo_keys[None, :]).to(logits.dtype)
    to_photo = -(match / match.sum(1, keepdim=True) * F.log_softmax(logits, 1)).sum(1).mean()
    to_sketch = -(match / match.sum(0, keepdim=True) * F.log_softmax(logits, 0)).sum(0).mean()
    return (to_photo + to_sketch) / 2


def hardest_negatives(anchor: torch.Tensor, photos: torch.Tensor, anchor_keys: torch.Tensor,
                      photo_keys: torch.Tensor) -> torch.Tensor:
    """Index into `photos` of each anchor's most similar photo whose key differs from the anchor's."""
    sim = anchor.detach() @ photos.detach().T
    sim = sim.masked_fill(anchor_keys[:, None] == photo_keys[None, :], float("-inf"))
    return sim.argmax(1)


def sample_class_subsets(labels: torch.Tensor, n_classes: int, k: int, generator: torch.Generator | None
                         ) -> torch.Tensor:
    """(B, k) class indices per image: its own label first, then k-1 other classes drawn without replacement."""
    scores = torch.rand(len(labels), n_classes, generator=generator).to(labels.device)
    scores[torch.arange(len(labels), device=labels.device), labels] = 2.0
    return scores.topk(k, dim=1).indices


class SpLIPLoss(nn.Module):
    """The total loss; owns the jigsaw solver (trainable) and the frozen class-text table for adaptive margins."""

    def __init__(self, model: SpLIP, classes: list[str], seed: int = 0):
        super().__init__()
        c: SpLIPConfig = model.config
        self.config = c
        self.classes = list(classes)
        self.temperature = c.temperature or 1.0 / float(model.clip.logit_scale.exp())
        dim = model.clip.text_projection.shape[1] if isinstance(model.clip.text_projection, torch.Tensor) else \
            model.clip.text_projection.out_features
        self.register_buffer("permutations", max_hamming_permutations(c.jigsaw_grid, c.jigsaw_permutations, seed))
        self.solver = JigsawSolver(dim, len(self.permutations), c.jigsaw_layers, c.jigsaw_heads) \
            if c.use_jigsaw else None
        margin_text = model.frozen_baseline().encode_text(self.classes, "photo") if c.adaptive_margin else None
        self.register_buffer("margin_text", margin_text, persistent=False)
        # a plain list, not a submodule: the frozen CLIP is neither trained nor saved with the solver
        self._frozen = [model.frozen_baseline().eval()] if c.photo_anchor_weight > 0 else []

    def class_subsets(self, model: SpLIP, labels: torch.Tensor,
                      generator: torch.Generator | None) -> torch.Tensor | None:
        """Each image's k seen classes for its text pass (`text_class_sample`), drawn from `generator`; None = all
        classes (the default, batch conditioning, inference, or k >= the number of classes)."""
        k = self.config.text_class_sample
        if k is None or k >= len(self.classes) or not model.training or model._conditioning() != "instance":
            return None
        return sample_class_subsets(labels, len(self.classes), k, generator)

    def margins(self, labels: torch.Tensor, negative_labels: torch.Tensor) -> torch.Tensor:
        """mu per triplet: the adaptive margin (clamped below at `margin_min`), or the fixed one for same-class
        pairs and when adaptive margins are off."""
        fixed = torch.full(labels.shape, self.config.fixed_margin, device=labels.device)
        if self.margin_text is None:
            return fixed
        text = self.margin_text.to(labels.device)
        adaptive = (text[labels] * text[negative_labels]).sum(-1)
        if self.config.margin_min is not None:
            adaptive = adaptive.clamp(min=self.config.margin_min)
        return torch.where(labels == negative_labels, fixed, adaptive)

    def forward(self, model: SpLIP, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None,
                stats: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
        """All terms for one batch of triplets; 'total' is what to backpropagate.

        Matching for the contrastive term and batch-hard mining is by class, or by `positive_key` /
        `negative_key` (instance ids) when the batch carries them (FG level). A dict passed as `stats` receives
        detached batch statistics (cosines, margins, active triplets, accuracies) for the training report.
        """
        c = self.config
        labels, neg_labels = batch["label"], batch["negative_label"]
        anchor_keys = batch.get("positive_key", labels)
        photo_keys = torch.cat([anchor_keys, batch.get("negative_key", neg_labels)])
        want_sketch_text = c.use_class_loss and c.class_loss_on in ("both", "sketch")
        want_photo_text = c.use_class_loss and c.class_loss_on in ("both", "photo")
        subset, neg_subset = self.class_subsets(model, labels, generator), self.class_subsets(model, neg_labels,
                                                                                                generator)
        # L_class targets: positions of the own class in each image's subset (its label without subsets)
        targets = labels if subset is None else (subset == labels[:, None]).int().argmax(1)
        # the class text comes with B_vt's pass anyway
        f_s, t_s = model(batch["sketch"], "sketch", with_class_text=True, class_subset=subset)
        f_p, t_p = model(batch["positive"], "photo", with_class_text=True, class_subset=subset)
        f_n = model(batch["negative"], "photo", class_subset=neg_subset)
        zero = f_s.sum() * 0
        terms = {"triplet": zero, "contrastive": zero, "class": zero, "jigsaw": zero, "anchor": zero}
        negatives, negative_labels = f_n, neg_labels
        if c.triplet_mining == "batch_hard":
            pick = hardest_negatives(f_s, torch.cat([f_p, f_n]), anchor_keys, photo_keys)
            negatives, negative_labels = torch.cat([f_p, f_n])[pick], torch.cat([labels, neg_labels])[pick]
        margins = self.margins(labels, negative_labels)
        if c.use_triplet:
            terms["triplet"] = triplet_loss(f_s, f_p, negatives, margins)
        if c.use_contrastive:
            terms["contrastive"] = contrastive_loss(f_s, f_p, anchor_keys, anchor_keys, c.contrastive_temperature)
        if c.use_class_loss:
            parts = []
            if want_sketch_text:
                parts.append(class_loss(f_s, t_s, targets, self.temperature))
            if want_photo_text:
                parts.append(class_loss(f_p, t_p, targets, self.temperature))
            terms["class"] = torch.stack(parts).mean()
        if self._frozen:
            photos = torch.cat([batch["positive"], batch["negative"]])
            with torch.no_grad():
                target = self._frozen[0].to(photos.device)(photos, "photo")
            terms["anchor"] = (1 - (torch.cat([f_p, f_n]) * target).sum(-1)).mean()
        jigsaw_logits = None
        if self.solver is not None:
            y = torch.randint(len(self.permutations), labels.shape, generator=generator).to(labels.device)
            shuffled = shuffle_tiles(batch["sketch"], self.permutations[y], c.jigsaw_grid)
            f_shuf = model(shuffled, "sketch", class_subset=subset)
            jigsaw_logits = self.solver(f_s, f_shuf)
            ce_sketch = F.cross_entropy(jigsaw_logits, y)
            ce_pos = F.cross_entropy(self.solver(f_p, f_shuf), y, reduction="none")
            ce_neg = F.cross_entropy(self.solver(f_n, f_shuf), y, reduction="none")
            terms["jigsaw"] = ce_sketch + F.relu(ce_pos - ce_neg).mean()
        terms["total"] = (terms["triplet"] + c.contrastive_weight * terms["contrastive"] + c.alpha * terms["class"]
                          + c.beta * terms["jigsaw"] + c.photo_anchor_weight * terms["anchor"])
        if stats is not None:
            with torch.no_grad():
                pos_cos, neg_cos = (f_s * f_p).sum(-1), (f_s * negatives).sum(-1)
                stats.update(pos_cos=float(pos_cos.mean()), neg_cos=float(neg_cos.mean()),
                             margin=float(margins.mean()), negative_margins=float((margins < 0).float().mean()),
                             active_triplets=float((neg_cos - pos_cos + margins > 0).float().mean()))
                if t_s is not None:
                    logits = f_s @ t_s[0].T if t_s.shape[0] == 1 else torch.einsum("bd,bcd->bc", f_s, t_s)
                    stats["class_acc"] = float((logits.argmax(1) == targets).float().mean())
                if jigsaw_logits is not None:
                    stats["jigsaw_acc"] = float((jigsaw_logits.argmax(1) == y).float().mean())
        return terms
