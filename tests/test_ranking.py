"""Ranking through the concept names: its search vectors' inner products are the score it defines, the calibration
moves only a sketch's seen names, and evaluation ranks every model the same way."""

import pytest
import torch
import torch.nn.functional as F

from splip_core import ConfigError, SpLIPConfig
from splip_core.config import RankingConfig
from splip_core.data import load_dataset
from splip_core.evaluate import evaluate
from splip_core.ranking import Ranker, name_distribution, search_vectors
from splip_core.tiny import tiny_model


def _unit(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


@pytest.mark.parametrize("agreement", ["dot", "sqrt"])
def test_search_vectors_score_the_cosine_plus_the_weighted_agreement_of_the_name_distributions(agreement):
    sketches, photos, text = _unit(5, 16, seed=1), _unit(7, 16, seed=2), _unit(9, 16, seed=3)
    cfg = RankingConfig(method="names", temperature=0.05, weight=2.5, agreement=agreement)
    p, q = name_distribution(sketches, text, cfg), name_distribution(photos, text, cfg)
    assert torch.allclose(p.sum(1), torch.ones(5)) and p.shape == (5, 9)
    agree = p @ q.T if agreement == "dot" else p.sqrt() @ q.sqrt().T
    got = search_vectors(sketches, text, cfg) @ search_vectors(photos, text, cfg).T
    assert torch.allclose(got, sketches @ photos.T + 2.5 * agree, atol=1e-5)


def test_the_seen_offset_moves_a_sketch_off_the_seen_names_and_leaves_photos_alone():
    feats, text = _unit(4, 16, seed=4), _unit(6, 16, seed=5)
    seen = torch.tensor([True, True, True, False, False, False])
    plain = Ranker(RankingConfig(method="names"), list("abcdef"), {"sketch": text, "photo": text}, seen)
    calibrated = Ranker(RankingConfig(method="names", seen_offset=0.2), list("abcdef"),
                        {"sketch": text, "photo": text}, seen)
    before, after = plain.distribution(feats, "sketch"), calibrated.distribution(feats, "sketch")
    assert (after[:, 3:].sum(1) > before[:, 3:].sum(1)).all()
    assert torch.equal(plain.vectors(feats, "photo"), calibrated.vectors(feats, "photo"))
    assert torch.equal(Ranker(RankingConfig()).vectors(feats, "sketch"), feats)  # the paper's cosine: as they are


def test_a_ranking_config_names_the_field_it_refuses_and_leaves_the_fingerprint_alone():
    for bad, field in (({"method": "bm25"}, "ranking.method"), ({"weight": -1.0}, "ranking.weight"),
                       ({"temperature": 0.0}, "ranking.temperature"), ({"text": "web"}, "ranking.text")):
        with pytest.raises(ConfigError, match=field):
            SpLIPConfig.from_dict({"ranking": bad})
    model = tiny_model()
    before = model.fingerprint()
    model.config = model.config.updated({"ranking": {"method": "names", "weight": 3.0}})
    model._fingerprint = None
    assert model.fingerprint() == before  # cached features stay valid: the ranking only re-ranks them


def test_the_names_ranking_reads_the_vocabulary_with_the_frozen_or_the_prompted_text(tmp_path):
    model = tiny_model(ranking={"method": "names", "vocabulary": ["cat", "zebra", "apple"]})
    frozen, prompted = Ranker.of(model), Ranker.of(model, RankingConfig(**{
        **model.config.ranking.__dict__, "text": "model"}))
    assert frozen.names == ["cat", "zebra", "apple"] and frozen.seen.tolist() == [True, False, True]
    assert torch.allclose(frozen.text["sketch"], model.frozen_baseline().encode_text(frozen.names, "sketch"))
    assert torch.allclose(prompted.text["sketch"], model.encode_text(frozen.names, "sketch"))
    assert not torch.allclose(frozen.text["sketch"], prompted.text["sketch"])  # the prompts change the text pass
    assert Ranker.of(tiny_model(ranking={"method": "names"})).names == list(model.config.seen_classes)


def test_evaluation_ranks_splip_and_its_baseline_the_same_way(folder_dataset):
    data = load_dataset("folder", folder_dataset)
    model = tiny_model(seen_classes=data.seen, ranking={"method": "names", "weight": 5.0, "temperature": 0.02})
    names = evaluate(model, data, "zs", bootstrap=0)
    cosine = evaluate(model, data, "zs", bootstrap=0, ranking=RankingConfig())
    plain = evaluate(tiny_model(seen_classes=data.seen), data, "zs", bootstrap=0)
    assert (names["ranking"], cosine["ranking"]) == ("names", "cosine")
    assert cosine["splip"] == plain["splip"] and cosine["baseline"] == plain["baseline"]
    assert names["splip"] != cosine["splip"] and names["baseline"] != cosine["baseline"]


def test_name_accuracy_counts_the_sketches_read_as_their_own_concept(folder_dataset):
    from splip_core.evaluate import embed_samples, name_accuracy

    data = load_dataset("folder", folder_dataset)
    model = tiny_model(seen_classes=data.seen)
    vocabulary = ["zebra", *data.classes]
    got = name_accuracy(model, data.sketches, data.classes, vocabulary)
    feats, kept = embed_samples(model, data.sketches, "sketch")
    text = model.frozen_baseline().encode_text(vocabulary, "sketch")
    truth = torch.tensor([vocabulary.index(data.classes[s.label]) for s in kept])
    assert got["splip"] == pytest.approx(float(((feats @ text.T).argmax(1) == truth).float().mean()))
    assert got["num_queries"] == len(data.sketches) and 0.0 <= got["baseline"] <= 1.0
    assert name_accuracy(model, data.sketches, data.classes, ["zebra"], baseline=False)["splip"] == 0.0
