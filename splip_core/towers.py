"""Running open_clip's image and text transformers block by block with prompt tokens put in between.

With no prompts both functions perform exactly the operations of open_clip's `encode_image` / `encode_text`
(the equivalence tests hold them to that), so every difference SpLIP makes comes from the prompts.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from open_clip.model import CLIP
from torch import nn


def _project(x: torch.Tensor, proj) -> torch.Tensor:
    if proj is None:
        return x
    return proj(x) if isinstance(proj, nn.Linear) else x @ proj


def vision_embeddings(clip: CLIP, pixels: torch.Tensor) -> torch.Tensor:
    """(B, 1 + P, Dv): class token + patch tokens after positional embedding and ln_pre (open_clip's `_embeds`)."""
    return clip.visual._embeds(pixels)


def run_vision(
    clip: CLIP,
    tokens: torch.Tensor,
    prompts: Callable[[int], torch.Tensor | None] | None = None,
    depth: int = 0,
) -> torch.Tensor:
    """Image features (B, D) from `vision_embeddings` output.

    `prompts(i)` gives the (B or 1, K, Dv) tokens for block i < depth: inserted after the class token before
    block 0, and replacing the previous block's prompt outputs before each later block (VPT-deep). They are dropped
    before pooling, so pooling sees exactly the class and patch tokens.
    """
    visual = clip.visual
    x, n_prompts = tokens, 0
    for i, block in enumerate(visual.transformer.resblocks):
        if prompts is not None and i < depth:
            p = prompts(i)
            p = p.expand(x.shape[0], -1, -1).to(x.dtype)
            x = torch.cat([x[:, :1], p, x[:, 1 + n_prompts :]], dim=1)
            n_prompts = p.shape[1]
        x = block(x)
    if n_prompts:
        x = torch.cat([x[:, :1], x[:, 1 + n_prompts :]], dim=1)
    pooled, _ = visual._pool(x)
    return _project(pooled, visual.proj)


def run_text(
    clip: CLIP,
    token_embeds: torch.Tensor,
    eot_index: torch.Tensor,
    slot_prompts: torch.Tensor | None = None,
    depth: int = 0,
    keep_eot_states: bool = False,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Text features (N, D) for embedded token sequences (N, L, Dt) of real length L <= context length.

    `slot_prompts` (N, m, Dt) replace positions 1..m (just after SOT) before each block i < depth; at block 0 they get
    the positional embedding of their slots like any token. The causal mask makes the EOT feature independent of the
    padding after it, so running only L positions instead of the full context gives the same result at a fraction
    of the cost. With `keep_eot_states`, also returns the EOT token's state entering each block (the W_l of B_vt).
    """
    length = token_embeds.shape[1]
    pos = clip.positional_embedding[:length].to(token_embeds.dtype)
    x = token_embeds + pos
    mask = clip.attn_mask[:length, :length] if clip.attn_mask is not None else None
    rows = torch.arange(x.shape[0], device=x.device)
    states: list[torch.Tensor] = []
    for i, block in enumerate(clip.transformer.resblocks):
        if slot_prompts is not None and i < depth:
            m = slot_prompts.shape[1]
            fresh = slot_prompts + pos[1 : 1 + m] if i == 0 else slot_prompts
            x = torch.cat([x[:, :1], fresh.to(x.dtype), x[:, 1 + m :]], dim=1)
        if keep_eot_states:
            states.append(x[rows, eot_index])
        x = block(x, attn_mask=mask)
    x = clip.ln_final(x)
    return _project(x[rows, eot_index], clip.text_projection), states
