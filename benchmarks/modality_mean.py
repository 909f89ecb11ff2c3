"""Does taking each modality's mean off the features help retrieval? Measured on the validation concepts.

python -m benchmarks.modality_mean --model OUT --world WORK/world [--json OUT.json] [--threads 1]

The mean of each modality is a fixed vector taken from training data only (the seen concepts' training doodles and
training photos, never a test or validation query): features minus their modality's mean, renormalised. Reported,
for SpLIP and its frozen baseline, under the cosine and under the model's own ranking: the validation doodles' ZS
mAP@all and the GZS validation view's C@5 (validation doodles as the unseen side, seen training doodles as the seen
side; splip_core/mini/calibrate.py), each plain and centred.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from splip_core import SpLIP
from splip_core.config import RankingConfig
from splip_core.data import load_dataset
from splip_core.evaluate import embed_samples
from splip_core.metrics import retrieval_metrics
from splip_core.mini.calibrate import validation_views
from splip_core.ranking import Ranker

MEAN_SAMPLES = 2000  # training images per modality whose mean is taken (a seeded subset)


def training_means(model: SpLIP, world: Path, memo: dict) -> dict[str, torch.Tensor]:
    """Each modality's mean feature over a seeded subset of the seen concepts' training doodles and photos."""
    train = load_dataset("folder", world / "train").sketch_domain("doodles")
    generator = torch.Generator().manual_seed(0)
    means = {}
    for modality, samples in (("sketch", train.sketches), ("photo", train.photos)):
        pick = torch.randperm(len(samples), generator=generator)[:MEAN_SAMPLES].sort().values
        feats, _ = embed_samples(model, [samples[i] for i in pick.tolist()], modality, memo=memo)
        means[modality] = feats.mean(0)
    return means


def measure(model: SpLIP, world: Path, memo: dict) -> dict:
    """{ranking: {"plain" | "centred": {"val_mAP", "unseen_C@5", "seen_C@5"}}} for one model."""
    split = json.loads((world / "split.json").read_text())
    _, gzs = validation_views(world, split)
    sketches, kept = embed_samples(model, gzs.sketches, "sketch", memo=memo)
    photos, shown = embed_samples(model, gzs.photos, "photo", memo=memo)
    s_lab, p_lab = torch.tensor([s.label for s in kept]), torch.tensor([s.label for s in shown])
    unseen = s_lab < len(split["val"])
    means = training_means(model, world, memo)
    report = {}
    for name, ranking in (("cosine", RankingConfig()), ("model", model.config.ranking)):
        ranker = Ranker.of(model, ranking)
        report[name] = {}
        for variant in ("plain", "centred"):
            s, p = sketches, photos
            if variant == "centred":
                s, p = F.normalize(s - means["sketch"], dim=-1), F.normalize(p - means["photo"], dim=-1)
            s, p = ranker.vectors(s, "sketch"), ranker.vectors(p, "photo")
            val_photos = p_lab < len(split["val"])
            zs = retrieval_metrics(s[unseen], s_lab[unseen], p[val_photos], p_lab[val_photos], ks=(), map_at=(),
                                   concept_ks=())["mAP@all"]
            c5 = [retrieval_metrics(s[rows], s_lab[rows], p, p_lab, ks=(), map_at=(), concept_ks=(5,))["C@5"]
                  for rows in (unseen, ~unseen)]
            report[name][variant] = {"val_mAP": zs, "unseen_C@5": c5[0], "seen_C@5": c5[1]}
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a built model (the build's --out)")
    parser.add_argument("--world", type=Path, required=True, help="the world it was built on (WORK/world)")
    parser.add_argument("--json", type=Path, help="write the numbers here")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, memo = SpLIP.from_pretrained(args.model), {}
    report = {"model": str(args.model), "mean_samples": MEAN_SAMPLES,
              "SpLIP": measure(model, args.world, memo), "frozen": measure(model.frozen_baseline(), args.world, memo)}
    for who in ("SpLIP", "frozen"):
        for ranking, variants in report[who].items():
            print(who, ranking, {v: {k: round(100 * x, 1) for k, x in m.items()} for v, m in variants.items()})
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
