"""SpLIP's training objective: L = L_triplet(adaptive margin) + alpha L_class + beta L_cjs (docs/METHOD.md
section 3),
plus an optional in-batch contrastive term (not in the paper; weight `contrastive_weight`).

L_class   cross-entropy of an image against the seen-class prompts of its modality, from the same prompted text pass
          that builds the visual prompts (temperature in the config); with `text_class_sample` = k, against the k
          classes of that image's sampled subset (its own class first). With `class_text` "frozen", against the
          frozen backbone's text of every seen class instead (a fixed table).
L_triplet sketch anchor, positive and negative photos; cosine distance; margin mu = cos(t(c+), t(c-)) from frozen
          CLIP text "a photo of a {c}" (detached), or a fixed margin (ablation; also used for same-class FG pairs);
          optionally clamped from below (`margin_min`). The negative is the sampled one, or with
          `triplet_mining="batch_hard"` the hardest non-matching photo among the batch's positives and negatives.
L_con     (optional) symmetric multi-positive InfoNCE between the batch's sketches and positive photos.
L_cjs     conditional cross-modal jigsaw: a sketch shuffled by permutation y is paired with the unshuffled sketch,
          the positive photo or the negative photo; a small transformer F_js predicts y. CE on the sketch pair plus a
          hinge asking the positive photo to unscramble the sketch better than the negative photo.
Every term can be switched off in the config's `loss` section for the ablations. The loss takes features: the
forward passes that produce them (which ones depends on the terms switched on) run in `splip_core.train`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import LossConfig


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


def class_logits(features: torch.Tensor, class_text: torch.Tensor) -> torch.Tensor:
    """(B, C) cosines of each image with its class texts; `class_text` is (B, C, D) per-image or (1, C, D) shared."""
    if class_text.shape[0] == 1:
        return features @ class_text[0].T
    return torch.einsum("bd,bcd->bc", features, class_text)


def class_loss(features: torch.Tensor, class_text: torch.Tensor, labels: torch.Tensor,
               temperature: float) -> torch.Tensor:
    """CE over seen classes (see `class_logits` for the shapes); labels of -100 are skipped."""
    if not (labels >= 0).any():
        return features.sum() * 0.0
    return F.cross_entropy(class_logits(features, class_text) / temperature, labels)


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


@dataclass
class BatchFeatures:
    """One batch of triplets as the model encoded it: L2-normalised (B, D) features, and what optional terms need."""

    sketch: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor
    sketch_text: torch.Tensor | None = None  # (B or 1, C, D) class text of the sketch's own prompted text pass
    positive_text: torch.Tensor | None = None  # likewise for the positive photo
    class_targets: torch.Tensor | None = None  # (B,) index of each image's class among its class text's rows
    shuffled: torch.Tensor | None = None  # the tile-shuffled sketches' features (jigsaw)
    permutation: torch.Tensor | None = None  # (B,) index into SpLIPLoss.permutations of each shuffle
    frozen_photos: torch.Tensor | None = None  # frozen CLIP features of [positives; negatives] (photo anchor)


class SpLIPLoss(nn.Module):
    """The total loss over encoded features; owns the jigsaw solver (trainable), its permutation set, and the frozen
    class-text table the adaptive margins read."""

    def __init__(self, config: LossConfig, margin_text: torch.Tensor | None, dim: int, temperature: float,
                 seed: int = 0, class_text: torch.Tensor | None = None):
        """`margin_text`: (C, D) frozen CLIP text features of the seen classes (needed with adaptive margins);
        `dim`: the feature width; `temperature`: tau of L_class; `class_text`: (2, C, D) frozen text of every seen
        class in the sketch and the photo template (needed with class_text "frozen")."""
        super().__init__()
        if config.adaptive_margin and margin_text is None:
            raise ValueError("adaptive margins need the frozen class-text features (margin_text)")
        self.config = config
        self.temperature = temperature
        self.register_buffer("permutations", max_hamming_permutations(config.jigsaw_grid, config.jigsaw_permutations,
                                                                      seed))
        self.solver = JigsawSolver(dim, len(self.permutations), config.jigsaw_layers, config.jigsaw_heads) \
            if config.use_jigsaw else None
        self.register_buffer("margin_text", margin_text if config.adaptive_margin else None, persistent=False)
        frozen_text = config.use_class_loss and config.class_text == "frozen"
        if frozen_text and class_text is None:
            raise ValueError("L_class against the frozen text needs its class-text table (class_text)")
        self.register_buffer("class_text", class_text if frozen_text else None, persistent=False)

    @property
    def wants_class_text(self) -> tuple[bool, bool]:
        """(sketch, photo): which images' class text L_class reads."""
        c = self.config
        return (c.use_class_loss and c.class_loss_on in ("both", "sketch"),
                c.use_class_loss and c.class_loss_on in ("both", "photo"))

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

    def forward(self, f: BatchFeatures, batch: dict[str, torch.Tensor],
                stats: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
        """All terms for one batch; 'total' is what to backpropagate. `batch` gives the labels ("label",
        "negative_label") and, at FG level, instance ids ("positive_key", "negative_key").

        Matching for the contrastive term and batch-hard mining is by class, or by instance id when the batch carries
        them. A dict passed as `stats` receives detached batch statistics (cosines, margins, active triplets,
        accuracies) for the training report.
        """
        c = self.config
        labels, neg_labels = batch["label"], batch["negative_label"]
        anchor_keys = batch.get("positive_key", labels)
        photo_keys = torch.cat([anchor_keys, batch.get("negative_key", neg_labels)])
        zero = f.sketch.sum() * 0
        terms = {"triplet": zero, "contrastive": zero, "class": zero, "jigsaw": zero, "anchor": zero}
        negatives, negative_labels = f.negative, neg_labels
        if c.triplet_mining == "batch_hard":
            photos = torch.cat([f.positive, f.negative])
            pick = hardest_negatives(f.sketch, photos, anchor_keys, photo_keys)
            negatives, negative_labels = photos[pick], torch.cat([labels, neg_labels])[pick]
        margins = self.margins(labels, negative_labels)
        if c.use_triplet:
            terms["triplet"] = triplet_loss(f.sketch, f.positive, negatives, margins)
        if c.use_contrastive:
            terms["contrastive"] = contrastive_loss(f.sketch, f.positive, anchor_keys, anchor_keys,
                                                    c.contrastive_temperature)
        if c.use_class_loss:
            texts, targets = (f.sketch_text, f.positive_text), f.class_targets
            if self.class_text is not None:  # the frozen table of every seen class, the same for every image
                texts, targets = (self.class_text[:1], self.class_text[1:]), labels
            parts = [class_loss(feats, text, targets, self.temperature)
                     for want, feats, text in zip(self.wants_class_text, (f.sketch, f.positive), texts, strict=True)
                     if want]
            terms["class"] = torch.stack(parts).mean()
        if c.photo_anchor_weight > 0:
            terms["anchor"] = (1 - (torch.cat([f.positive, f.negative]) * f.frozen_photos).sum(-1)).mean()
        jigsaw_logits = None
        if self.solver is not None:
            y = f.permutation
            jigsaw_logits = self.solver(f.sketch, f.shuffled)
            ce_pos = F.cross_entropy(self.solver(f.positive, f.shuffled), y, reduction="none")
            ce_neg = F.cross_entropy(self.solver(f.negative, f.shuffled), y, reduction="none")
            terms["jigsaw"] = F.cross_entropy(jigsaw_logits, y) + F.relu(ce_pos - ce_neg).mean()
        terms["total"] = (terms["triplet"] + c.contrastive_weight * terms["contrastive"] + c.alpha * terms["class"]
                          + c.beta * terms["jigsaw"] + c.photo_anchor_weight * terms["anchor"])
        if stats is not None:
            with torch.no_grad():
                pos_cos, neg_cos = (f.sketch * f.positive).sum(-1), (f.sketch * negatives).sum(-1)
                stats.update(pos_cos=float(pos_cos.mean()), neg_cos=float(neg_cos.mean()),
                             margin=float(margins.mean()), negative_margins=float((margins < 0).float().mean()),
                             active_triplets=float((neg_cos - pos_cos + margins > 0).float().mean()))
                if self.class_text is not None:  # over every seen class's frozen text
                    stats["class_acc"] = float((class_logits(f.sketch, self.class_text[:1]).argmax(1) == labels)
                                               .float().mean())
                elif f.sketch_text is not None and f.class_targets is not None:
                    logits, known = class_logits(f.sketch, f.sketch_text), f.class_targets >= 0
                    if known.any():
                        stats["class_acc"] = float((logits.argmax(1) == f.class_targets)[known].float().mean())
                if jigsaw_logits is not None:
                    stats["jigsaw_acc"] = float((jigsaw_logits.argmax(1) == f.permutation).float().mean())
        return terms
