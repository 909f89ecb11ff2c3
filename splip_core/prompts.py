"""The three prompt generators of SpLIP; every prompt is produced by a mapper from the other modality.

B_t  (vision -> text): mean patch embedding of the image -> m text prompt tokens T.
B_v  (text -> vision): token embeddings of the modality template ("a sketch of a") -> one visual token per word.
B_vt (text -> vision): EOT states of the seen-class prompts entering text block l, averaged over the classes ->
                       n visual tokens for the visual block(s) that read text block l.
Architectures are [U] in the paper; the choices here are named in SpLIPConfig.
"""

from __future__ import annotations

import torch
from torch import nn


def _mlp(d_in: int, d_hidden: int, d_out: int, layers: int, init_std: float) -> nn.Sequential:
    """LayerNorm on the input (the mapped states differ in scale per layer), then `layers` linear maps with GELU."""
    mods: list[nn.Module] = [nn.LayerNorm(d_in)]
    dims = [d_in] + [d_hidden] * (layers - 1) + [d_out]
    for i in range(layers):
        mods.append(nn.Linear(dims[i], dims[i + 1]))
        if i < layers - 1:
            mods.append(nn.GELU())
    last = mods[-1]
    nn.init.normal_(last.weight, std=init_std)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*mods)


class VisionToText(nn.Module):
    """B_t: (B, Dv) mean patch embedding -> (B, m, Dt) text prompt tokens."""

    def __init__(self, d_vision: int, d_text: int, m: int, hidden: int, layers: int, init_std: float):
        super().__init__()
        self.m, self.d_text = m, d_text
        self.net = _mlp(d_vision, hidden, m * d_text, layers, init_std)

    def forward(self, mean_patch: torch.Tensor) -> torch.Tensor:
        return self.net(mean_patch).view(-1, self.m, self.d_text)


class TemplateToVision(nn.Module):
    """B_v: (J-1, Dt) template word embeddings -> (J-1, Dv) visual prompts, the same at every visual layer."""

    def __init__(self, d_text: int, d_vision: int, init_std: float):
        super().__init__()
        self.norm = nn.LayerNorm(d_text)
        self.proj = nn.Linear(d_text, d_vision)
        nn.init.normal_(self.proj.weight, std=init_std)
        nn.init.zeros_(self.proj.bias)

    def forward(self, template_embeds: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(template_embeds))


class TextLayersToVision(nn.Module):
    """B_vt: class-averaged EOT state (.., Dt) entering text block l -> (.., n, Dv); shared or one per layer."""

    def __init__(self, d_text: int, d_vision: int, n: int, hidden: int, n_layers: int, per_layer: bool,
                 init_std: float):
        super().__init__()
        self.n, self.d_vision = n, d_vision
        count = n_layers if per_layer else 1
        self.nets = nn.ModuleList(_mlp(d_text, hidden, n * d_vision, 2, init_std) for _ in range(count))

    def forward(self, state: torch.Tensor, layer: int) -> torch.Tensor:
        net = self.nets[layer if len(self.nets) > 1 else 0]
        return net(state).view(*state.shape[:-1], self.n, self.d_vision)
