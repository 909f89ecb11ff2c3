"""The three loss terms: their definitions, the jigsaw permutations, and gradients reaching the prompts."""

import itertools
import math

import pytest
import torch

from splip_core.config import LossConfig
from splip_core.losses import (
    BatchFeatures,
    SpLIPLoss,
    class_loss,
    contrastive_loss,
    hardest_negatives,
    max_hamming_permutations,
    shuffle_tiles,
    triplet_loss,
)
from splip_core.tiny import TINY_CLASSES, tiny_model
from splip_core.train import TrainingStep, make_loss, sample_class_subsets


def _batch(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % len(TINY_CLASSES)
    return {
        "sketch": torch.randn(n, 3, 32, 32, generator=g),
        "positive": torch.randn(n, 3, 32, 32, generator=g),
        "negative": torch.randn(n, 3, 32, 32, generator=g),
        "label": labels,
        "negative_label": (labels + 1) % len(TINY_CLASSES),
    }


def test_permutations_are_distinct_far_apart_and_never_the_identity():
    perms = max_hamming_permutations(3, 100, seed=0)
    assert perms.shape == (100, 9)
    assert len({tuple(p.tolist()) for p in perms}) == 100
    assert all(sorted(p.tolist()) == list(range(9)) for p in perms)
    assert not (perms == torch.arange(9)).all(1).any()
    dist = (perms[:, None] != perms[None]).sum(-1) + torch.eye(100, dtype=torch.long) * 99
    assert dist.min() >= 5  # greedy max-Hamming; random sets of 100 typically have pairs at distance 2
    assert torch.equal(perms, max_hamming_permutations(3, 100, seed=0))
    assert len(max_hamming_permutations(2, 100)) == 23  # 4! - identity


def test_shuffling_tiles_round_trips_with_the_inverse_permutation():
    pixels = torch.randn(5, 3, 32, 32)
    perms = max_hamming_permutations(3, 5, seed=1)
    shuffled = shuffle_tiles(pixels, perms, 3)
    assert not torch.equal(shuffled, pixels)
    inverse = torch.argsort(perms, dim=1)
    assert torch.equal(shuffle_tiles(shuffled, inverse, 3), pixels)
    # tile 0 of the output is input tile perms[0]; the 2-pixel border (32 = 3 * 10 + 2) is untouched
    r, c = divmod(int(perms[0, 0]), 3)
    assert torch.equal(shuffled[0, :, :10, :10], pixels[0, :, r * 10 : r * 10 + 10, c * 10 : c * 10 + 10])
    assert torch.equal(shuffled[:, :, 30:, :], pixels[:, :, 30:, :])


def test_triplet_loss_is_a_hinge_on_cosine_distances():
    a = torch.tensor([[1.0, 0.0]])
    p = torch.tensor([[1.0, 0.0]])
    n = torch.tensor([[0.0, 1.0]])
    assert triplet_loss(a, p, n, torch.tensor([0.5])).item() == 0.0  # d(a,p)=0, d(a,n)=1: satisfied
    assert triplet_loss(a, n, p, torch.tensor([0.5])).item() == pytest.approx(1.5)


def test_class_loss_accepts_shared_or_per_image_class_text():
    feats = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    text = torch.nn.functional.normalize(torch.randn(1, 5, 8), dim=-1)
    labels = torch.tensor([0, 2, 4])
    shared = class_loss(feats, text, labels, 0.1)
    per_image = class_loss(feats, text.expand(3, -1, -1), labels, 0.1)
    assert shared.item() == pytest.approx(per_image.item(), abs=1e-6)
    expected = torch.nn.functional.cross_entropy(feats @ text[0].T / 0.1, labels)
    assert shared.item() == pytest.approx(expected.item(), abs=1e-6)


def test_adaptive_margin_is_the_cosine_of_class_texts_and_fixed_for_same_class_pairs():
    model = tiny_model()
    loss = make_loss(model)
    text = model.frozen_baseline().encode_text(TINY_CLASSES, "photo")
    margins = loss.margins(torch.tensor([0, 1, 2]), torch.tensor([1, 1, 5]))
    assert margins[0].item() == pytest.approx(float(text[0] @ text[1]), abs=1e-5)
    assert margins[1].item() == pytest.approx(model.config.loss.fixed_margin)
    fixed = make_loss(tiny_model(adaptive_margin=False))
    assert torch.allclose(fixed.margins(torch.tensor([0, 1]), torch.tensor([1, 2])), torch.tensor([0.2, 0.2]))


@pytest.mark.parametrize("term", ["triplet", "class", "jigsaw"])
def test_each_term_alone_sends_gradient_to_the_prompt_generators(term):
    flags = {"use_triplet": term == "triplet", "use_class_loss": term == "class", "use_jigsaw": term == "jigsaw"}
    model = tiny_model(**flags).train()
    loss_fn = make_loss(model)
    terms = TrainingStep(model, loss_fn)(_batch(), torch.Generator().manual_seed(0))
    assert terms[term].item() > 0
    assert terms["total"].item() == pytest.approx(
        {"triplet": 1.0, "class": model.config.loss.alpha, "jigsaw": model.config.loss.beta}[term] * terms[term].item()
    )
    terms["total"].backward()
    for module in ("b_t", "b_v", "b_vt"):
        grads = [p.grad for p in getattr(model, module).parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), (term, module)
    if term == "jigsaw":
        assert all(p.grad is not None for p in loss_fn.solver.parameters())


def test_a_few_steps_lower_the_total_loss():
    model = tiny_model().train()
    loss_fn = make_loss(model)
    params = [p for p in itertools.chain(model.parameters(), loss_fn.parameters()) if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=3e-3)
    batch = _batch(4)
    losses = []
    for _ in range(8):
        terms = TrainingStep(model, loss_fn)(batch, torch.Generator().manual_seed(0))
        optimizer.zero_grad()
        terms["total"].backward()
        optimizer.step()
        losses.append(terms["total"].item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_margin_min_clamps_only_the_adaptive_margins_from_below():
    model = tiny_model()
    text = model.frozen_baseline().encode_text(TINY_CLASSES, "photo")
    labels, negatives = torch.tensor([0, 0, 1, 2, 3]), torch.tensor([1, 2, 3, 4, 3])
    cosines = (text[labels] * text[negatives]).sum(-1)
    floor = float(cosines[:4].sort().values[1])  # between the adaptive margins: some get clamped, some do not
    clamped = make_loss(tiny_model(margin_min=floor)).margins(labels, negatives)
    expected = torch.where(labels == negatives, torch.tensor(0.2), cosines.clamp(min=floor))
    assert torch.allclose(clamped, expected, atol=1e-6)
    assert (clamped[:4] == floor).any() and (clamped[:4] > floor).any()
    assert torch.allclose(make_loss(model).margins(labels, negatives)[:4], cosines[:4], atol=1e-6)


def test_contrastive_loss_matches_a_hand_computation_with_multiple_positives():
    sketch = torch.nn.functional.normalize(torch.tensor([[1.0, 0.2], [0.3, 1.0], [-1.0, 0.5]]), dim=-1)
    photo = torch.nn.functional.normalize(torch.tensor([[0.8, 0.1], [0.0, 1.0], [-0.5, -1.0]]), dim=-1)
    keys = torch.tensor([4, 4, 7])  # sketches 0 and 1 share a class: each matches photos 0 and 1
    tau = 0.5
    sim = (sketch @ photo.T).tolist()

    def direction(rows):
        total = 0.0
        for i, row in enumerate(rows):
            log_z = math.log(sum(math.exp(s / tau) for s in row))
            matches = [j for j in range(3) if keys[i] == keys[j]]
            total += -sum(row[j] / tau - log_z for j in matches) / len(matches)
        return total / 3

    expected = (direction(sim) + direction((photo @ sketch.T).tolist())) / 2
    assert contrastive_loss(sketch, photo, keys, keys, tau).item() == pytest.approx(expected, abs=1e-5)
    unique = torch.arange(3)
    clip_style = (torch.nn.functional.cross_entropy(sketch @ photo.T / tau, unique)
                  + torch.nn.functional.cross_entropy(photo @ sketch.T / tau, unique)) / 2
    assert contrastive_loss(sketch, photo, unique, unique, tau).item() == pytest.approx(clip_style.item(), abs=1e-6)
    aligned = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]]), dim=-1)
    assert contrastive_loss(aligned, aligned, keys, keys, tau) < contrastive_loss(sketch, photo, keys, keys, tau)


def test_contrastive_term_enters_the_total_with_its_weight():
    model = tiny_model(use_contrastive=True, contrastive_weight=0.5, use_jigsaw=False).train()
    terms = TrainingStep(model, make_loss(model))(_batch(), torch.Generator().manual_seed(0))
    assert terms["contrastive"].item() > 0
    expected = terms["triplet"] + 0.5 * terms["contrastive"] + model.config.loss.alpha * terms["class"]
    assert terms["total"].item() == pytest.approx(expected.item(), rel=1e-6)
    off = TrainingStep(tiny_model().train(), make_loss(tiny_model()))(_batch(), torch.Generator().manual_seed(0))
    assert off["contrastive"].item() == 0


def test_hardest_negative_is_the_most_similar_photo_with_another_key():
    anchor = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    photos = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.1, 0.9], [0.5, 0.5]]), dim=-1)
    keys = torch.tensor([0, 1, 1, 2])
    # anchor 0 (key 0): photo 0 has its own key, photo 1 is the closest other one; anchor 1 (key 1): photos 1, 2 are
    # its own, photo 3 is closer than photo 0
    assert hardest_negatives(anchor, photos, torch.tensor([0, 1]), keys).tolist() == [1, 3]


def test_batch_hard_triplets_use_the_hardest_in_batch_photo_and_its_margin():
    model = tiny_model(triplet_mining="batch_hard", use_class_loss=False, use_jigsaw=False)
    loss_fn = make_loss(model)
    batch = _batch(6)
    terms = TrainingStep(model, loss_fn)(batch)
    f_s, f_p, f_n = (model(batch[k], m) for k, m in (("sketch", "sketch"), ("positive", "photo"),
                                                     ("negative", "photo")))
    photos, photo_labels = torch.cat([f_p, f_n]), torch.cat([batch["label"], batch["negative_label"]])
    sim = (f_s @ photos.T).masked_fill(batch["label"][:, None] == photo_labels[None], -2)
    hard = sim.argmax(1)
    expected = triplet_loss(f_s, f_p, photos[hard], loss_fn.margins(batch["label"], photo_labels[hard]))
    assert terms["triplet"].item() == pytest.approx(expected.item(), abs=1e-6)
    assert ((f_s * photos[hard]).sum(-1) >= (f_s * f_n).sum(-1) - 1e-6).all()  # the sampled negative is a candidate


def test_instance_keys_decide_the_matches_of_the_in_batch_terms():
    model = tiny_model(use_contrastive=True, triplet_mining="batch_hard", use_class_loss=False, use_jigsaw=False)
    loss_fn = make_loss(model)
    batch = _batch(4)
    batch["label"] = batch["negative_label"] = torch.zeros(4, dtype=torch.long)  # FG: negatives of the same class
    batch["positive_key"], batch["negative_key"] = torch.tensor([0, 1, 2, 3]), torch.tensor([1, 2, 3, -1])
    terms = TrainingStep(model, loss_fn)(batch)
    f_s, f_p = model(batch["sketch"], "sketch"), model(batch["positive"], "photo")
    expected = contrastive_loss(f_s, f_p, batch["positive_key"], batch["positive_key"], 0.07)
    assert terms["contrastive"].item() == pytest.approx(expected.item(), abs=1e-5)
    assert torch.isfinite(terms["triplet"])


def test_stats_report_cosines_margins_and_accuracies():
    model = tiny_model().train()
    stats = {}
    TrainingStep(model, make_loss(model))(_batch(), torch.Generator().manual_seed(0), stats)
    assert set(stats) == {"pos_cos", "neg_cos", "margin", "negative_margins", "active_triplets", "class_acc",
                          "jigsaw_acc"}
    assert all(isinstance(v, float) for v in stats.values())
    assert 0 <= stats["active_triplets"] <= 1 and -1 <= stats["pos_cos"] <= 1


def test_class_subsets_hold_the_own_class_first_and_are_seeded():
    labels = torch.tensor([0, 3, 5, 3, 1])
    subsets = sample_class_subsets(labels, 6, 3, torch.Generator().manual_seed(7))
    assert subsets.shape == (5, 3) and torch.equal(subsets[:, 0], labels)
    assert all(len(set(row.tolist())) == 3 for row in subsets)
    assert torch.equal(subsets, sample_class_subsets(labels, 6, 3, torch.Generator().manual_seed(7)))
    draws = {tuple(sample_class_subsets(labels, 6, 3, torch.Generator().manual_seed(s)).flatten().tolist())
             for s in range(5)}
    assert len(draws) > 1


def test_class_loss_over_a_subset_targets_the_own_class():
    model = tiny_model(text_class_sample=3, use_triplet=False, use_jigsaw=False, class_loss_on="sketch").train()
    loss_fn = make_loss(model)
    batch = _batch(4)
    terms = TrainingStep(model, loss_fn)(batch, torch.Generator().manual_seed(0))
    subset = sample_class_subsets(batch["label"], len(TINY_CLASSES), 3, torch.Generator().manual_seed(0))
    feats, text = model(batch["sketch"], "sketch", with_class_text=True, class_subset=subset)
    logits = torch.einsum("bd,bcd->bc", feats, text) / loss_fn.temperature
    assert text.shape == (4, 3, 32)
    expected = torch.nn.functional.cross_entropy(logits, torch.zeros(4, dtype=torch.long))
    assert terms["class"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert TrainingStep(model.eval(), loss_fn).class_subsets(batch["label"], None) is None  # inference: all
    batch_model = tiny_model(text_class_sample=3, train_text_conditioning="batch").train()
    assert TrainingStep(batch_model, make_loss(batch_model)).class_subsets(batch["label"], None) is None


def test_a_shared_class_subset_conditions_every_image_alike_and_skips_absent_classes_in_l_class():
    model = tiny_model(text_class_sample=3, text_class_sample_shared=True, use_jigsaw=False,
                       class_loss_on="sketch").train()
    step = TrainingStep(model, make_loss(model))
    batch = _batch(4)
    subset = step.class_subsets(batch["label"], torch.Generator().manual_seed(0))
    assert subset.shape == (4, 3) and all(torch.equal(row, subset[0]) for row in subset)  # one set for all images
    draws = {tuple(step.class_subsets(batch["label"], torch.Generator().manual_seed(s))[0].tolist()) for s in range(8)}
    assert len(draws) > 1
    feats = step.features(batch, torch.Generator().manual_seed(0))
    hit = subset == batch["label"][:, None]
    assert torch.equal(feats.class_targets >= 0, hit.any(1))  # -100 where the image's class is not in the set
    assert class_loss(feats.sketch, feats.sketch_text, torch.full((4,), -100), 1.0).item() == 0.0
    terms = step(batch, torch.Generator().manual_seed(0))
    assert torch.isfinite(terms["total"])


def test_photo_anchor_is_one_minus_the_cosine_to_the_frozen_clip_and_trains_nothing_frozen():
    model = tiny_model(photo_anchor_weight=2.0, use_jigsaw=False).train()
    loss_fn = make_loss(model)
    batch = _batch()
    terms = TrainingStep(model, loss_fn)(batch, torch.Generator().manual_seed(0))
    photos = torch.cat([batch["positive"], batch["negative"]])
    with torch.no_grad():
        mine, frozen = model(photos, "photo"), model.frozen_baseline()(photos, "photo")
    assert terms["anchor"].item() == pytest.approx((1 - (mine * frozen).sum(-1)).mean().item(), rel=1e-4)
    assert 0 < terms["anchor"].item() < 2
    expected = terms["triplet"] + model.config.loss.alpha * terms["class"] + 2.0 * terms["anchor"]
    assert terms["total"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert not list(loss_fn.parameters()) and set(loss_fn.state_dict()) == {"permutations"}  # frozen copy: not kept
    plain = tiny_model(use_jigsaw=False).train()
    assert TrainingStep(plain, make_loss(plain))(batch)["anchor"].item() == 0


def test_the_loss_takes_features_and_runs_no_model():
    """SpLIPLoss holds no model: given features and labels it computes every term by its definition."""
    g = torch.Generator().manual_seed(3)
    unit = [torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=-1) for _ in range(3)]
    config = LossConfig(adaptive_margin=False, use_class_loss=False, use_jigsaw=False)
    loss_fn = SpLIPLoss(config, None, dim=8, temperature=0.01)
    assert not any(isinstance(m, torch.nn.Module) and hasattr(m, "encode_image") for m in loss_fn.modules())
    labels = torch.tensor([0, 1, 2, 3])
    terms = loss_fn(BatchFeatures(*unit), {"label": labels, "negative_label": (labels + 1) % 4})
    assert terms["triplet"].item() == pytest.approx(triplet_loss(*unit, torch.full((4,), 0.2)).item(), abs=1e-6)
    assert terms["total"].item() == pytest.approx(terms["triplet"].item())
    with pytest.raises(ValueError, match="margin_text"):
        SpLIPLoss(LossConfig(), None, dim=8, temperature=0.01)


def test_l_class_against_the_frozen_text_reads_every_seen_class_in_each_modalitys_template():
    """class_text "frozen": the sketch against the frozen text of "a sketch of a {c}", the positive photo against
    "a photo of a {c}", over every seen class whatever subset conditions the prompts; the table trains nothing."""
    model = tiny_model(class_text="frozen", text_class_sample=3, text_class_sample_shared=True, use_jigsaw=False,
                       alpha=1.0).train()
    loss_fn = make_loss(model)
    frozen = model.frozen_baseline()
    assert torch.allclose(loss_fn.class_text[0], frozen.encode_text(TINY_CLASSES, "sketch"))
    assert torch.allclose(loss_fn.class_text[1], frozen.encode_text(TINY_CLASSES, "photo"))
    batch, step = _batch(), TrainingStep(model, loss_fn)
    feats = step.features(batch, torch.Generator().manual_seed(0))
    stats = {}
    terms = loss_fn(feats, batch, stats)
    expected = (class_loss(feats.sketch, loss_fn.class_text[:1], batch["label"], loss_fn.temperature)
                + class_loss(feats.positive, loss_fn.class_text[1:], batch["label"], loss_fn.temperature)) / 2
    assert terms["class"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert 0.0 <= stats["class_acc"] <= 1.0 and "class_text" not in loss_fn.state_dict()
    terms["total"].backward()
    assert model.b_t.net[-1].weight.grad is not None
    with pytest.raises(ValueError, match="class-text table"):
        SpLIPLoss(LossConfig(class_text="frozen", adaptive_margin=False), None, dim=8, temperature=0.01)
