"""SpLIP's forward pass: equivalence with open_clip when prompts are off, what trains, what stays frozen."""

import dataclasses
import re

import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from splip_core import ConfigError, InvalidImageError, SpLIP, SpLIPConfig
from splip_core.model import prompt_norms
from splip_core.tiny import TINY_CLASSES, tiny_config, tiny_model

TOL = 1e-5


def _open_clip_reference(clip, pixels, texts, context_length):
    tok = open_clip.get_tokenizer("ViT-B-32", context_length=context_length)
    with torch.no_grad():
        return F.normalize(clip.encode_image(pixels), dim=-1), F.normalize(clip.encode_text(tok(texts)), dim=-1)


def _check_prompts_off_equivalence(model: SpLIP, pixels: torch.Tensor):
    names = ["cat", "hot air balloon", "car (sedan)"]
    texts = [model.config.templates["sketch"].format(n) for n in names]
    ref_img, ref_txt = _open_clip_reference(model.clip, pixels, texts, model.clip.context_length)
    assert (model.encode_photo(pixels) - ref_img).abs().max() <= TOL
    assert (model.encode_sketch(pixels) - ref_img).abs().max() <= TOL
    assert (model.encode_text(names, "sketch") - ref_txt).abs().max() <= TOL


def test_prompts_off_equals_open_clip_on_tiny_config():
    model = SpLIP(tiny_config(use_prompts=False))
    torch.manual_seed(1)
    _check_prompts_off_equivalence(model, torch.randn(3, 3, 32, 32))


@pytest.mark.slow
def test_prompts_off_equals_open_clip_on_vit_b32():
    torch.manual_seed(0)
    model = SpLIP(SpLIPConfig.from_dict({"backbone": {"name": "ViT-B-32", "pretrained": None},
                                         "prompts": {"use_prompts": False}}))
    _check_prompts_off_equivalence(model, torch.randn(2, 3, 224, 224))


def test_prompts_change_embeddings_and_depend_on_modality():
    model = tiny_model()
    pixels = torch.randn(2, 3, 32, 32)
    plain = model.frozen_baseline().encode_photo(pixels)
    photo, sketch = model.encode_photo(pixels), model.encode_sketch(pixels)
    assert (photo - plain).abs().max() > 1e-3
    assert (photo - sketch).abs().max() > 1e-3
    assert torch.allclose(photo.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_gradients_reach_every_prompt_parameter_and_backbone_stays_frozen():
    model = tiny_model()
    model.train()
    frozen = {n: p.detach().clone() for n, p in model.clip.named_parameters() if not p.requires_grad}
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith("b_t.") for n in trainable)
    assert any(n.startswith("b_v.") for n in trainable)
    assert any(n.startswith("b_vt.") for n in trainable)
    assert any(".ln_" in n for n in trainable)  # LayerNorm tuning on by default
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    feats, class_text = model(torch.randn(4, 3, 32, 32), "sketch", with_class_text=True)
    logits = torch.einsum("bd,bcd->bc", feats, class_text) / 0.01
    F.cross_entropy(logits, torch.tensor([0, 1, 2, 3])).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert missing == []
    optimizer.step()
    for name, p in model.clip.named_parameters():
        if name in frozen:
            assert torch.equal(p, frozen[name]), name
    changed = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, trainable[n])]
    assert len(changed) == len(trainable)


def test_layernorm_tuning_can_be_switched_off():
    model = tiny_model(tune_layernorm=False)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all(n.startswith(("b_t.", "b_v.", "b_vt.")) for n in names)


@pytest.mark.parametrize(
    ("flag", "module"),
    [("use_text_prompts", "b_t"), ("use_template_prompts", "b_v"), ("use_shared_prompts", "b_vt")],
)
def test_each_prompt_generator_can_be_ablated(flag, module):
    model = tiny_model(**{flag: False})
    assert getattr(model, module) is None
    feats = model.encode_sketch(torch.randn(2, 3, 32, 32))
    assert feats.shape == (2, 32)


def test_faithful_encoding_of_an_image_does_not_depend_on_its_batch():
    model = tiny_model()
    pixels = torch.randn(3, 3, 32, 32)
    together = model.encode_sketch(pixels)
    alone = torch.cat([model.encode_sketch(pixels[i : i + 1]) for i in range(3)])
    assert (together - alone).abs().max() < 1e-5


def test_fast_mode_equals_faithful_where_the_text_prompts_do_not_depend_on_the_image():
    faithful = tiny_model(use_text_prompts=False)
    fast = tiny_model(use_text_prompts=False, inference_mode="fast")
    pixels = torch.randn(2, 3, 32, 32)
    assert (faithful.encode_photo(pixels) - fast.encode_photo(pixels)).abs().max() < 1e-6
    off_fast = SpLIP(tiny_config(use_prompts=False, inference_mode="fast"), _clip=faithful.clip)
    off = SpLIP(tiny_config(use_prompts=False), _clip=faithful.clip)
    assert torch.equal(off_fast.encode_photo(pixels), off.encode_photo(pixels))


def test_fast_mode_differs_from_faithful_when_text_prompts_are_image_conditioned():
    model = tiny_model()
    pixels = torch.randn(2, 3, 32, 32)
    faithful = model.encode_sketch(pixels)
    model.set_inference_mode("fast")
    assert (model.encode_sketch(pixels) - faithful).abs().max() > 1e-4


@pytest.mark.parametrize("mode", ["faithful", "fast"])
def test_traced_one_image_encoders_equal_eager_ones_and_go_when_the_model_changes(mode, monkeypatch):
    model = tiny_model(inference_mode=mode)
    baseline = model.frozen_baseline()
    pixels = torch.randn(3, 3, 32, 32)
    eager = {m: model.encode_image(pixels[:1], m) for m in ("sketch", "photo")}
    plain = baseline.encode_sketch(pixels[:1])
    model.trace_for_serving()
    baseline.trace_for_serving()

    def no_eager(*args, **kwargs):
        raise AssertionError("the eager forward ran for one image")

    monkeypatch.setattr(model, "forward", no_eager)
    for modality, expected in eager.items():  # one image: the trace answers, with the eager result
        assert torch.allclose(model.encode_image(pixels[:1], modality), expected, atol=1e-6)
    assert torch.allclose(baseline.encode_sketch(pixels[:1]), plain, atol=1e-6)
    with pytest.raises(AssertionError, match="eager forward"):
        model.encode_sketch(pixels)  # a batch: the eager forward
    monkeypatch.undo()
    model.set_inference_mode("fast" if mode == "faithful" else "faithful")
    assert not model._traced  # traced in the other mode: gone
    model.trace_for_serving()
    model.train()
    assert not model._traced  # weights may change in training: gone


def test_a_model_that_cannot_be_traced_stays_eager_and_says_so(monkeypatch):
    model = tiny_model()
    pixels = torch.randn(1, 3, 32, 32)
    eager = model.encode_sketch(pixels)

    def untraceable(*args, **kwargs):
        raise RuntimeError("no TorchScript here")

    monkeypatch.setattr(torch.jit, "trace", untraceable)
    with pytest.warns(RuntimeWarning, match="no TorchScript here"):
        model.trace_for_serving()
    assert not model._traced and torch.equal(model.encode_sketch(pixels), eager)


def test_running_mean_of_patches_follows_training_batches():
    model = tiny_model()
    model.train()
    pixels = torch.randn(6, 3, 32, 32)
    model(pixels[:2], "photo")
    model(pixels[2:], "photo")
    with torch.no_grad():
        expected = model.clip.visual._embeds(pixels)[:, 1:].mean(1).mean(0)
    assert torch.allclose(model.mean_patch_photo, expected, atol=1e-5)
    assert model.mean_patch_count_photo.item() == 6
    assert model.mean_patch_count_sketch.item() == 0


def test_towers_of_unequal_depth_and_per_layer_mappers():
    model = tiny_model(vision_layers=4, text_layers=2, bvt_per_layer=True, visual_prompt_depth=3,
                       text_prompt_position="replace")
    assert len(model.b_vt.nets) == 2
    assert [model._text_layer_for(i) for i in range(4)] == [0, 0, 1, 1]
    assert model.encode_photo(torch.randn(1, 3, 32, 32)).shape == (1, 32)


def test_frozen_baseline_ignores_tuned_layernorms_and_shares_the_big_tensors():
    model = tiny_model()
    with torch.no_grad():
        model.clip.visual.ln_post.weight.mul_(3.0)
    baseline = model.frozen_baseline()
    pixels = torch.randn(2, 3, 32, 32)
    pure = SpLIP(tiny_config(use_prompts=False), _clip=baseline.clip)
    assert torch.equal(baseline.encode_photo(pixels), pure.encode_photo(pixels))
    assert baseline.clip.visual.conv1.weight.data_ptr() == model.clip.visual.conv1.weight.data_ptr()
    assert not torch.equal(baseline.clip.visual.ln_post.weight, model.clip.visual.ln_post.weight)


def test_pil_images_paths_and_tensors_are_accepted(tmp_path):
    model = tiny_model()
    image = Image.new("RGB", (50, 40), "white")
    image.paste((0, 0, 0), (10, 10, 30, 12))
    path = tmp_path / "sketch.png"
    image.save(path)
    a = model.encode_sketch(image)
    b = model.encode_sketch([str(path)])
    c = model.encode_sketch(model.preprocess(image).unsqueeze(0))
    assert torch.allclose(a, b) and torch.allclose(a, c)


def test_bad_images_get_clear_errors(tmp_path):
    model = tiny_model()
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not an image")
    with pytest.raises(InvalidImageError, match=r"notes\.txt: not a readable image"):
        model.encode_photo([text_file])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(InvalidImageError, match="empty file"):
        model.encode_photo([empty])
    with pytest.raises(InvalidImageError, match="no such file"):
        model.encode_photo([tmp_path / "missing.png"])
    with pytest.raises(ValueError, match="no images"):
        model.encode_photo([])
    with pytest.raises(ValueError, match=r"expected a preprocessed batch \(N, 3, 32, 32\)"):
        model.encode_photo(torch.randn(2, 3, 64, 64))


def test_unknown_modality_and_overlong_prompt_are_refused():
    model = tiny_model()
    with pytest.raises(ValueError, match="modality"):
        model.encode_text(["cat"], "painting")
    with pytest.raises(ValueError, match="over the text encoder's context"):
        model.encode_text(["very " * 40 + "long name"], "photo")


def test_config_is_strict_and_round_trips_through_json(tmp_path):
    config = tiny_config(alpha=2.0)
    config.to_json(tmp_path / "c.json")
    assert SpLIPConfig.from_json(tmp_path / "c.json") == config
    with pytest.raises(ConfigError, match="unknown SpLIP config keys: \\['alpah'\\]"):
        SpLIPConfig.from_dict({**config.to_dict(), "alpah": 1})
    with pytest.raises(ConfigError, match="seen_classes is empty"):
        SpLIPConfig.from_dict({"seen_classes": []})
    with pytest.raises(ConfigError, match="inference_mode"):
        tiny_config(inference_mode="quick")
    assert tiny_config().seen_classes == TINY_CLASSES


@pytest.mark.parametrize("bad, message", [
    ({"prompts": {"n_text_prompts": "4"}}, "prompts.n_text_prompts must be int, got '4'"),
    ({"prompts": {"n_shared_prompts": 2.5}}, "prompts.n_shared_prompts must be int, got 2.5"),
    ({"prompts": {"tune_layernorm": 1}}, "prompts.tune_layernorm must be bool"),
    ({"loss": {"margin_min": "0.1"}}, "loss.margin_min must be float | None"),
    ({"seen_classes": ["cat", 3]}, "seen_classes must be list"),
])
def test_a_value_of_the_wrong_type_is_a_config_error_naming_the_field(bad, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        SpLIPConfig.from_dict({"seen_classes": TINY_CLASSES, **bad})
    assert tiny_config(alpha=1).loss.alpha == 1  # an int where a float is expected is fine


def test_set_inference_mode_validates_and_renews_the_fingerprint_and_configs_are_frozen():
    model = tiny_model(use_text_prompts=False)
    faithful = model.fingerprint()
    pixels = torch.randn(2, 3, 32, 32)
    model.set_inference_mode("fast")
    model.encode_photo(pixels)  # fills the fast-mode prompt cache
    assert model.config.inference_mode == "fast" and model.fingerprint() != faithful
    with pytest.raises(ConfigError, match="inference_mode"):
        model.set_inference_mode("quick")
    assert model.config.inference_mode == "fast"  # a refused mode changes nothing
    model.set_inference_mode("faithful")
    assert model.fingerprint() == faithful and not model._fast_cache
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.config.inference_mode = "fast"  # the one way to switch is set_inference_mode


def test_the_fingerprint_leaves_out_fields_at_their_defaults_and_follows_every_change():
    """A field added later with a default must not change the fingerprints (cache keys) of older checkpoints."""
    config = tiny_config()
    kept = config.non_defaults()
    for section in ("backbone", "prompts", "loss"):
        defaults = dataclasses.asdict(type(getattr(config, section))())
        assert all(defaults[k] != v for k, v in kept.get(section, {}).items()), section
        assert {k for k, v in dataclasses.asdict(getattr(config, section)).items() if defaults[k] != v} == set(
            kept.get(section, {})), section
    assert "inference_mode" not in kept and kept["seen_classes"] == TINY_CLASSES
    changed = config.updated({"loss": {"alpha": config.loss.alpha + 0.5}})
    assert changed.non_defaults()["loss"]["alpha"] == changed.loss.alpha

    def fingerprint(c):
        torch.manual_seed(0)
        return SpLIP(c).fingerprint()

    assert fingerprint(config) == fingerprint(config) != fingerprint(changed)


def test_flat_and_nested_configs_read_the_same_and_dropped_knobs_are_checked():
    nested = tiny_config(alpha=0.3, tune_layernorm=False)
    assert (nested.loss.alpha, nested.prompts.tune_layernorm) == (0.3, False)
    flat = {k: v for section in ("prompts", "loss") for k, v in nested.to_dict()[section].items()}
    flat |= {"backbone": "tiny-test-clip", "pretrained": None, "backbone_config": nested.backbone.model_config,
             "seen_classes": nested.seen_classes, "bt_pool": "mean", "bv_input": "embedding"}
    assert SpLIPConfig.from_dict(flat) == nested
    with pytest.raises(ConfigError, match="bt_pool supports 'mean' only"):
        SpLIPConfig.from_dict({**flat, "bt_pool": "max"})
    assert nested.updated({"loss": {"beta": 0.1}}).loss == dataclasses.replace(nested.loss, beta=0.1)


def test_prompt_norms_measure_the_learnt_tokens_against_the_backbone_tokens():
    model = tiny_model()
    pixels = torch.randn(3, 3, 32, 32)
    norms = prompt_norms(model, pixels, "sketch")
    assert set(norms) == {"word_embedding", "patch_token", "T", "V_tg", "V_ms", "layernorm_delta"}
    with torch.no_grad():
        patches = model.clip.visual._embeds(pixels)[:, 1:]
        assert norms["T"] == pytest.approx(float(model.b_t(patches.mean(1)).norm(dim=-1).mean()), rel=1e-5)
        assert norms["patch_token"] == pytest.approx(float(patches.norm(dim=-1).mean()), rel=1e-5)
    assert norms["layernorm_delta"] == 0
    with torch.no_grad():
        model.clip.ln_final.weight[3] += 0.25
    assert prompt_norms(model, pixels, "sketch")["layernorm_delta"] == pytest.approx(0.25)
    plain = prompt_norms(tiny_model(use_prompts=False), pixels, "photo")
    assert set(plain) == {"word_embedding", "patch_token", "layernorm_delta"}


def test_training_recipe_fields_round_trip_and_are_validated(tmp_path):
    config = tiny_config(margin_min=0.05, use_contrastive=True, contrastive_weight=0.3, contrastive_temperature=0.1,
                         triplet_mining="batch_hard", text_class_sample=3)
    config.to_json(tmp_path / "c.json")
    assert SpLIPConfig.from_json(tmp_path / "c.json") == config
    defaults = tiny_config()
    loss = defaults.loss
    assert (loss.margin_min, loss.use_contrastive, loss.triplet_mining, defaults.prompts.text_class_sample) == (
        None, False, "random", None)
    for bad, message in (({"triplet_mining": "hardest"}, "triplet_mining"),
                         ({"contrastive_temperature": 0.0}, "contrastive_temperature"),
                         ({"contrastive_weight": -1.0}, "contrastive_weight"),
                         ({"text_class_sample": 0}, "text_class_sample")):
        with pytest.raises(ConfigError, match=message):
            tiny_config(**bad)


def test_a_class_subset_text_pass_equals_the_full_pass_restricted_to_it():
    model = tiny_model().train()
    pixels = torch.randn(3, 3, 32, 32)
    subset = torch.tensor([[0, 4, 2], [5, 1, 0], [3, 3, 2]])
    with torch.no_grad():
        full_feats, full_text = model(pixels, "photo", with_class_text=True)
        feats, text = model(pixels, "photo", with_class_text=True, class_subset=subset)
        everything, all_text = model(pixels, "photo", with_class_text=True,
                                     class_subset=torch.arange(len(TINY_CLASSES)).expand(3, -1))
    assert text.shape == (3, 3, 32)
    assert torch.allclose(text, full_text[torch.arange(3)[:, None], subset], atol=1e-5)
    assert (feats - full_feats).abs().max() > 1e-4  # B_vt averages over the subset only
    assert torch.allclose(everything, full_feats, atol=1e-5) and torch.allclose(all_text, full_text, atol=1e-5)


def test_class_subsets_are_refused_outside_instance_conditioned_training():
    subset = torch.zeros(2, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="class subsets"):
        tiny_model()(torch.randn(2, 3, 32, 32), "sketch", class_subset=subset)  # eval: all seen classes
    with pytest.raises(ValueError, match="class subsets"):
        tiny_model(train_text_conditioning="batch").train()(torch.randn(2, 3, 32, 32), "sketch", class_subset=subset)
