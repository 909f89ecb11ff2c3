"""Does a prompt recipe fit its own training data, and what does fitting do to the validation concepts?

Trains a preset ("mini" by default) on a rendered world for a fixed number of steps, with overrides, then measures
the final weights against the frozen backbone: the training fit (training sketches of the seen concepts against the
training photos, a seeded subset of queries) and the validation concepts, each with the concept-clustered 95% CI of
SpLIP minus frozen, plus the loss curve, the norms of what was learnt and how often a validation doodle reads as its
own concept's name (doodle -> name top-1 over the whole vocabulary). With `--names-ranking` the run validates
under the ranking the frozen backbone's validation doodles choose, and then chooses its own, as the build does
(splip_core/mini/calibrate.py).

    python -m benchmarks.prompt_fit --world W/world --backbone W/splip-mini-clip --lr 2e-3 --steps 300 \\
        --shared-prompts 8 [--shared-subset] --out benchmarks/results/prompt-fit-NAME.json --threads 1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from splip_core.config import RankingConfig
from splip_core.data import load_dataset
from splip_core.evaluate import name_accuracy
from splip_core.mini.build import BuildConfig, fit_and_validation, prompt_run
from splip_core.mini.calibrate import choose_ranking, drawn_names, vocabularies
from splip_core.model import SpLIP
from splip_core.names import folder_name
from splip_core.train import train


def measure(world: Path, backbone: Path, run: Path, lr: float, steps: int, shared_prompts: int,
            shared_subset: bool, eval_every: int | None = None, model_set: dict | None = None,
            train_set: dict | None = None, preset: str = "mini", names: bool = False) -> dict:
    """Train and measure one recipe. With `eval_every` the run validates as it goes and keeps its best validated
    weights (as the build does, without stopping early); `model_set` / `train_set` override the preset. With
    `names`, the run validates under the ranking the frozen backbone chose, and chooses its own afterwards."""
    data = load_dataset("folder", world / "train")
    split = json.loads((world / "split.json").read_text())
    categories = [*split["seen"], *split["val"], *split["unseen"], *split["doodles"]["pretrain_categories"]]
    budget = BuildConfig(train_overrides={"lr": lr, "max_steps": steps, "eval_every": eval_every, "patience": None,
                                          **(train_set or {})})
    config, opts = prompt_run(backbone, data, budget, preset, {"prompts": {
        "n_shared_prompts": shared_prompts, "text_class_sample_shared": shared_subset}})
    memo: dict = {}
    if names:
        frozen_choice = choose_ranking(SpLIP(config).frozen_baseline(), world, split, vocabularies(split, categories),
                                       drawn_names(split), memo)
        config = config.updated({"ranking": frozen_choice["ranking"]})
    config = config.updated(model_set or {})
    val = load_dataset("folder", world / "val") if eval_every else None
    history = train(config, data, run, opts, device="cpu", val_data=val)
    model = SpLIP.from_pretrained(run)
    curve_keys = ("global_step", "total", "pos_cos", "neg_cos", "val_mAP")
    report = {"preset": preset, "lr": lr, "steps": steps, "shared_prompts": shared_prompts,
              "shared_subset": shared_subset, "model_set": model_set or {}, "train_set": train_set or {},
              "loss_curve": [{k: h[k] for k in curve_keys if k in h} for h in history],
              "norms": {k: v for k, v in history[-1].items() if k.startswith("norm_")}}
    if names:
        report["ranking_frozen"] = frozen_choice
        report["ranking_choice"] = choose_ranking(model, world, split, vocabularies(split, categories),
                                                  drawn_names(split), memo)
        model.config = model.config.replace(ranking=RankingConfig(**report["ranking_choice"]["ranking"]))
    val = load_dataset("folder", world / "val", split=[folder_name(c) for c in split["val"]]).sketch_domain("doodles")
    report["val_doodle_name_top1"] = name_accuracy(model, val.sketches, val.classes,
                                                   model.config.ranking.vocabulary or categories, memo=memo)
    for name, r in fit_and_validation(model, world, split, memo).items():
        report[name] = {"frozen": r["baseline"]["mAP@all"], "splip": r["splip"]["mAP@all"],
                        "difference": r["difference"]["mAP@all"], "num_queries": r["num_queries"],
                        "num_concepts": r["num_concepts"]}
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", type=Path, required=True, help="a rendered world (the build's WORK/world)")
    parser.add_argument("--backbone", type=Path, required=True, help="the tiny CLIP (open_clip local-dir layout)")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--shared-prompts", type=int, default=8, help="prompts.n_shared_prompts")
    parser.add_argument("--shared-subset", action="store_true", help="prompts.text_class_sample_shared")
    parser.add_argument("--eval-every", type=int, help="validate every N steps and keep the best validated weights")
    parser.add_argument("--model-set", type=json.loads,
                        help='model config overrides as JSON, e.g. {"loss": {"use_contrastive": true}}')
    parser.add_argument("--train-set", type=json.loads, help="TrainOptions overrides as JSON")
    parser.add_argument("--preset", default="mini", help="the recipe the overrides change")
    parser.add_argument("--names-ranking", action="store_true",
                        help="validate under the ranking the frozen backbone chooses, then choose the prompts' own")
    parser.add_argument("--run", type=Path, default=Path(".cache/prompt-fit"), help="training run folder")
    parser.add_argument("--out", type=Path, required=True, help="JSON report")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    report = measure(args.world, args.backbone, args.run, args.lr, args.steps, args.shared_prompts,
                     args.shared_subset, args.eval_every, args.model_set, args.train_set, args.preset,
                     args.names_ranking)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps({k: report[k] for k in ("training_fit", "validation", "val_doodle_name_top1")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
