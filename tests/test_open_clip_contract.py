"""The open_clip internals SpLIP relies on, checked on a tiny CLIP built with open_clip itself.

splip_core/towers.py runs open_clip's towers block by block (private `_embeds` / `_pool`, `resblocks`, `attn_mask`,
...), and backbone.py / model.py read attributes and factory helpers that are not open_clip's public API either.
requirements.txt pins open_clip_torch and pyproject.toml holds it to its minor release; when that pin moves, this
test names every piece that changed, so towers.py (and the other files named) can be updated for the new version
instead of failing deep inside a forward pass or, worse, silently computing something else.

Everything is built with open_clip directly (no SpLIP code), so a rename inside splip_core cannot hide a change.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import open_clip
import pytest
import torch
from PIL import Image
from torch import nn

# A CLIP small enough to build and run in milliseconds (the shape of splip_core.tiny's backbone).
EMBED, V_WIDTH, T_WIDTH, IMAGE, PATCH, CONTEXT, LAYERS = 32, 64, 32, 32, 8, 32, 2
MODEL_CFG = {
    "embed_dim": EMBED,
    "vision_cfg": {"image_size": IMAGE, "patch_size": PATCH, "width": V_WIDTH, "layers": LAYERS, "head_width": 32},
    "text_cfg": {"context_length": CONTEXT, "vocab_size": 49408, "width": T_WIDTH, "heads": 2, "layers": LAYERS},
}
PREPROCESS_CFG = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
N_PATCHES = (IMAGE // PATCH) ** 2
PINNED = next((line.split("==")[1].strip() for line in
               (Path(__file__).resolve().parents[1] / "requirements.txt").read_text().splitlines()
               if line.startswith("open_clip_torch==")), "?")


@dataclass
class World:
    clip: nn.Module
    pixels: torch.Tensor
    ids: torch.Tensor  # (N, CONTEXT) token ids, zero-padded after EOT
    eot: torch.Tensor  # (N,) EOT positions
    local_dir: Path  # open_clip's local-dir layout holding `clip`'s config and weights


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    try:
        from open_clip.model import CLIP
        from open_clip.tokenizer import SimpleTokenizer

        torch.manual_seed(0)
        clip = CLIP(**MODEL_CFG).eval()
        tok = SimpleTokenizer(context_length=CONTEXT)
        seqs = [[tok.sot_token_id, *tok.encode(text), tok.eot_token_id]
                for text in ("a sketch of a cat.", "a photo of a hot air balloon over the sea.")]
    except Exception as err:  # the contract test cannot even start: still say what to update
        pytest.fail(f"open_clip {open_clip.__version__}: building a tiny CLIP and tokenizing with open_clip failed "
                    f"({type(err).__name__}: {err}); splip_core/backbone.py and towers.py rely on "
                    f"open_clip.model.CLIP(embed_dim, vision_cfg, text_cfg) and open_clip.tokenizer.SimpleTokenizer "
                    f"and must be updated for this open_clip version (tested: {PINNED})")
    ids = torch.zeros(len(seqs), CONTEXT, dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.tensor(seq)
    local_dir = tmp_path_factory.mktemp("open_clip_local_dir")
    (local_dir / "open_clip_config.json").write_text(json.dumps({"model_cfg": MODEL_CFG,
                                                                 "preprocess_cfg": PREPROCESS_CFG}))
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(local_dir / "open_clip_model.safetensors"))
    return World(clip, torch.randn(2, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(0)), ids,
                 torch.tensor([len(s) - 1 for s in seqs]), local_dir)


def close(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} != {tuple(b.shape)}"
    diff = float((a - b).abs().max())
    assert diff < 1e-5, f"{what}: max difference {diff:.2e}"


def params(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


# ----------------------------------------------------------------------------------------------------------------
# the checks: (what SpLIP relies on, and where; a check that raises when it no longer holds)
def check_clip_constructor(w: World) -> None:
    from open_clip.model import CLIP

    wanted = ["embed_dim", "vision_cfg", "text_cfg", "quick_gelu", "init_logit_scale", "init_logit_bias"]
    missing = [p for p in wanted if p not in params(CLIP.__init__)]
    assert not missing, f"CLIP.__init__ lacks {missing}"


def check_vision_tower_class(w: World) -> None:
    from open_clip.transformer import VisionTransformer

    assert isinstance(w.clip.visual, VisionTransformer), f"visual is {type(w.clip.visual).__name__}"


def check_text_pooling(w: World) -> None:
    assert w.clip.text_pool_type == "argmax", f"text_pool_type is {w.clip.text_pool_type!r}"
    assert w.clip.context_length == CONTEXT, f"context_length is {w.clip.context_length!r}"


def check_vision_attributes(w: World) -> None:
    v = w.clip.visual
    assert isinstance(v.conv1.weight, torch.Tensor), "visual.conv1.weight is not a tensor"
    assert v.transformer.width == V_WIDTH, f"visual.transformer.width is {v.transformer.width!r}"
    assert len(v.transformer.resblocks) == LAYERS, f"{len(v.transformer.resblocks)} visual resblocks"
    size = v.image_size
    assert (size if isinstance(size, int) else tuple(size)) in (IMAGE, (IMAGE, IMAGE)), f"image_size is {size!r}"
    assert v.proj is None or isinstance(v.proj, nn.Linear) or tuple(v.proj.shape) == (V_WIDTH, EMBED), \
        f"visual.proj is {type(v.proj).__name__} {tuple(getattr(v.proj, 'shape', ()))}"


def check_embeds_shape(w: World) -> None:
    x = w.clip.visual._embeds(w.pixels)
    assert tuple(x.shape) == (2, 1 + N_PATCHES, V_WIDTH), f"_embeds gave {tuple(x.shape)}"


def check_embeds_steps(w: World) -> None:
    v = w.clip.visual
    x = v.conv1(w.pixels).flatten(2).transpose(1, 2)
    x = torch.cat([v.class_embedding.expand(x.shape[0], 1, -1), x], dim=1) + v.positional_embedding
    close(v._embeds(w.pixels), v.ln_pre(v.patch_dropout(x)), "_embeds vs conv1 -> [class token, patches] + "
          "positional_embedding -> patch_dropout -> ln_pre (towers.py puts prompts right after token 0)")


def check_pool(w: World) -> None:
    v = w.clip.visual
    x = torch.randn(2, 1 + N_PATCHES, V_WIDTH)
    out = v._pool(x)
    assert isinstance(out, tuple) and len(out) == 2, f"_pool returned {type(out).__name__}, not (pooled, tokens)"
    close(out[0], v.ln_post(x)[:, 0], "_pool(x)[0] vs ln_post(x)[:, 0] (the class token)")


def check_blocks(w: World) -> None:
    for name, tower in (("visual.transformer", w.clip.visual.transformer), ("transformer", w.clip.transformer)):
        batch_first = getattr(tower, "batch_first", None)
        assert batch_first is True, f"{name}.batch_first is {batch_first!r}"
        block = tower.resblocks[0]
        assert "attn_mask" in params(block.forward), f"{name}.resblocks[0].forward{inspect.signature(block.forward)}"
    x = torch.randn(2, 5, V_WIDTH)
    assert tuple(w.clip.visual.transformer.resblocks[0](x).shape) == (2, 5, V_WIDTH), "a block changed (B, L, D)"


def check_encode_image(w: World) -> None:
    v = w.clip.visual
    x = v._embeds(w.pixels)
    for block in v.transformer.resblocks:
        x = block(x)
    pooled, _ = v._pool(x)
    proj = v.proj
    got = pooled if proj is None else proj(pooled) if isinstance(proj, nn.Linear) else pooled @ proj
    close(got, w.clip.encode_image(w.pixels), "_embeds -> resblocks -> _pool -> proj vs encode_image")


def check_text_attributes(w: World) -> None:
    c = w.clip
    assert isinstance(c.token_embedding, nn.Embedding), f"token_embedding is {type(c.token_embedding).__name__}"
    assert tuple(c.token_embedding.weight.shape) == (49408, T_WIDTH), "token_embedding.weight shape"
    assert tuple(c.positional_embedding.shape) == (CONTEXT, T_WIDTH), \
        f"positional_embedding is {tuple(c.positional_embedding.shape)}"
    assert c.transformer.width == T_WIDTH and len(c.transformer.resblocks) == LAYERS, "transformer width / resblocks"
    assert isinstance(c.ln_final, nn.LayerNorm), f"ln_final is {type(c.ln_final).__name__}"
    proj = c.text_projection
    assert proj is None or isinstance(proj, nn.Linear) or tuple(proj.shape) == (T_WIDTH, EMBED), \
        f"text_projection is {type(proj).__name__} {tuple(getattr(proj, 'shape', ()))}"


def check_attn_mask(w: World) -> None:
    mask = w.clip.attn_mask
    assert isinstance(mask, torch.Tensor), f"attn_mask is {type(mask).__name__}"
    assert tuple(mask.shape) == (CONTEXT, CONTEXT), f"attn_mask is {tuple(mask.shape)}"
    above = torch.ones(CONTEXT, CONTEXT, dtype=torch.bool).triu(1)
    assert bool((mask[~above] == 0).all()) and bool(torch.isinf(mask[above]).all()), "attn_mask is not causal"


def check_encode_text(w: World) -> None:
    c = w.clip
    length = int(w.eot.max()) + 1  # towers.run_text runs only the real length: the causal mask makes it exact
    x = c.token_embedding(w.ids[:, :length]) + c.positional_embedding[:length]
    for block in c.transformer.resblocks:
        x = block(x, attn_mask=c.attn_mask[:length, :length])
    x = c.ln_final(x)[torch.arange(len(w.eot)), w.eot]
    proj = c.text_projection
    got = x if proj is None else proj(x) if isinstance(proj, nn.Linear) else x @ proj
    close(got, c.encode_text(w.ids), "token_embedding + positional_embedding[:L] -> resblocks(attn_mask[:L, :L]) "
          "-> ln_final -> EOT row -> text_projection vs encode_text on the full context")


def check_layernorms(w: World) -> None:
    modules = dict(w.clip.named_modules())
    names = ["visual.ln_pre", "visual.ln_post", "ln_final", "visual.transformer.resblocks.0.ln_1",
             "transformer.resblocks.0.ln_2"]
    wrong = [f"{n} ({type(modules[n]).__name__})" if n in modules else f"{n} (missing)" for n in names
             if not isinstance(modules.get(n), nn.LayerNorm)]
    assert not wrong, f"not torch.nn.LayerNorm: {wrong}"


def check_tokenizer(w: World) -> None:
    from open_clip.tokenizer import SimpleTokenizer

    assert "context_length" in params(SimpleTokenizer.__init__), "SimpleTokenizer(context_length=) is gone"
    tok = SimpleTokenizer(context_length=CONTEXT)
    words = tok.encode("a doodle of a hot air balloon")
    assert isinstance(words, list) and all(isinstance(i, int) for i in words), "encode(text) is not a list of ints"
    assert tok.eot_token_id > max(words) and tok.eot_token_id > tok.sot_token_id, "EOT is not the highest token id"
    batch = tok(["a cat.", "a dog."])
    assert tuple(batch.shape) == (2, CONTEXT), f"tokenizer(texts) gave {tuple(batch.shape)}"


def check_image_transform(w: World) -> None:
    from open_clip.transform import image_transform

    transform = image_transform(IMAGE, is_train=False, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    out = transform(Image.new("RGB", (60, 40), "white"))
    assert tuple(out.shape) == (3, IMAGE, IMAGE), f"image_transform gave {tuple(out.shape)}"
    assert torch.allclose(out, torch.full_like(out, 2.0)), "image_transform does not normalise with mean/std"


def check_parse_model_name(w: World) -> None:
    parse = open_clip.factory.parse_model_name
    got = [parse("ViT-B-32"), parse("hf-hub:org/repo"), parse("local-dir:/some/dir")]
    assert got == [(None, "ViT-B-32"), ("hf-hub", "org/repo"), ("local-dir", "/some/dir")], got


def check_get_model_config(w: World) -> None:
    got = open_clip.factory.get_model_config(f"local-dir:{w.local_dir}")
    assert got == MODEL_CFG, f"get_model_config(local-dir) gave {got!r}"


def check_named_models(w: World) -> None:
    assert "ViT-B-32" in open_clip.list_models(), "ViT-B-32 not in list_models()"
    tags = open_clip.list_pretrained_tags_by_model("ViT-B-32")
    assert tags and all(isinstance(t, str) for t in tags), f"list_pretrained_tags_by_model gave {tags!r}"
    cfgs = [open_clip.get_pretrained_cfg("ViT-B-32", t) for t in tags]
    assert all(isinstance(c, dict) for c in cfgs), "get_pretrained_cfg is not a dict"
    assert any(c.get("hf_hub") for c in cfgs), "no pretrained cfg names an 'hf_hub' repo"


def check_local_dir_loading(w: World) -> None:
    model = open_clip.create_model(f"local-dir:{w.local_dir}", pretrained=None)
    for name, tensor in w.clip.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), f"create_model(local-dir) did not load {name}"
    pp = getattr(model.visual, "preprocess_cfg", None)
    assert isinstance(pp, dict), "create_model no longer attaches visual.preprocess_cfg"
    assert [list(pp.get(k, ())) for k in ("mean", "std")] == [PREPROCESS_CFG["mean"], PREPROCESS_CFG["std"]], \
        f"visual.preprocess_cfg is {pp!r}, not the local dir's preprocess_cfg"
    out = open_clip.create_model_and_transforms(f"local-dir:{w.local_dir}")
    assert isinstance(out, tuple) and len(out) == 3, "create_model_and_transforms is not (model, train, eval)"
    tokens = open_clip.get_tokenizer(f"local-dir:{w.local_dir}")(["a cat."])
    assert tuple(tokens.shape) == (1, CONTEXT), f"get_tokenizer(local-dir) gave {tuple(tokens.shape)}"


CHECKS: list[tuple[str, Callable[[World], None]]] = [
    ("open_clip.model.CLIP(embed_dim, vision_cfg, text_cfg, quick_gelu, init_logit_scale, init_logit_bias) "
     "[backbone.py build_backbone]", check_clip_constructor),
    ("CLIP.visual is open_clip.transformer.VisionTransformer [backbone.py _check_supported]",
     check_vision_tower_class),
    ("CLIP.text_pool_type == 'argmax' and CLIP.context_length [backbone.py, towers.py run_text, model.py]",
     check_text_pooling),
    ("visual.conv1.weight, visual.transformer.width / .resblocks, visual.image_size, visual.proj "
     "[model.py, backbone.py preprocess_settings, towers.py run_vision]", check_vision_attributes),
    ("visual._embeds(pixels) -> (B, 1 + patches, width) [towers.py vision_embeddings]", check_embeds_shape),
    ("visual._embeds = conv1, class_embedding first, positional_embedding, patch_dropout, ln_pre "
     "[towers.py run_vision inserts prompts after token 0]", check_embeds_steps),
    ("visual._pool(x) -> (pooled, tokens): ln_post then the class token [towers.py run_vision]", check_pool),
    ("transformer.batch_first and resblocks[i](x, attn_mask=...) on (B, L, D) [towers.py]", check_blocks),
    ("_embeds -> visual.transformer.resblocks -> _pool -> proj reproduces encode_image [towers.py run_vision]",
     check_encode_image),
    ("CLIP.token_embedding, positional_embedding, transformer.width / .resblocks, ln_final, text_projection "
     "[towers.py run_text, model.py]", check_text_attributes),
    ("CLIP.attn_mask: a (context, context) causal additive mask [towers.py run_text slices it]", check_attn_mask),
    ("token_embedding + positional_embedding[:L] -> resblocks(attn_mask[:L, :L]) -> ln_final -> EOT -> "
     "text_projection reproduces encode_text [towers.py run_text]", check_encode_text),
    ("the towers' LayerNorms are torch.nn.LayerNorm [model.py tune_layernorm, _snapshot_layernorms]",
     check_layernorms),
    ("open_clip.tokenizer.SimpleTokenizer(context_length=): sot_token_id, eot_token_id (highest id), encode(), "
     "__call__ [backbone.py tokenizer, model.py _prompt_ids, mini/pretrain.py]", check_tokenizer),
    ("open_clip.transform.image_transform(size, is_train=False, mean=, std=) [backbone.py make_transform]",
     check_image_transform),
    ("open_clip.factory.parse_model_name -> (schema, identifier) [backbone.py, model.py]", check_parse_model_name),
    ("open_clip.factory.get_model_config('local-dir:DIR') -> model_cfg [model.py _saved_config]",
     check_get_model_config),
    ("open_clip.list_models, list_pretrained_tags_by_model, get_pretrained_cfg(...)['hf_hub'] "
     "[backbone.py _named_backbone, backbone_base_model]", check_named_models),
    ("local-dir layout (open_clip_config.json + open_clip_model.safetensors): create_model attaches "
     "visual.preprocess_cfg, create_model_and_transforms, get_tokenizer [backbone.py, mini/pretrain.py]",
     check_local_dir_loading),
]


def contract_failures(w: World) -> list[str]:
    failures = []
    with torch.no_grad():
        for what, check in CHECKS:
            try:
                check(w)
            except Exception as err:  # AssertionError for a changed piece, AttributeError/TypeError for a missing one
                detail = str(err).splitlines()[0] if str(err) else ""  # not pytest's rewritten-assert explanation
                failures.append(f"- {what}\n    {type(err).__name__}: {detail}")
    return failures


def report(failures: list[str]) -> str:
    return (f"open_clip {open_clip.__version__}: {len(failures)} of {len(CHECKS)} checks on the open_clip internals "
            f"SpLIP relies on failed (changed or missing). splip_core/towers.py (and the other files named in "
            f"brackets) must be updated for this open_clip version, or open_clip_torch kept at {PINNED} "
            f"(requirements.txt):\n"
            + "\n".join(failures))


def test_open_clip_internals_used_by_towers_and_backbone_are_unchanged(world):
    failures = contract_failures(world)
    if failures:
        pytest.fail(report(failures), pytrace=False)


def test_the_contract_names_a_missing_method_and_a_changed_mask(world, monkeypatch):
    """The check can fail: with `_embeds` gone and the causal mask dropped, the report names both and towers.py."""
    from open_clip.transformer import VisionTransformer

    monkeypatch.delattr(VisionTransformer, "_embeds")
    monkeypatch.setattr(world.clip, "attn_mask", torch.zeros(CONTEXT, CONTEXT))
    failures = contract_failures(world)
    text = report(failures)
    assert any("visual._embeds(pixels)" in f and "AttributeError" in f for f in failures), text
    assert any(f.startswith("- CLIP.attn_mask") and "not causal" in f for f in failures), text
    assert f"open_clip {open_clip.__version__}:" in text and "splip_core/towers.py" in text
    assert not any("parse_model_name" in f for f in failures), text  # the untouched pieces still pass
