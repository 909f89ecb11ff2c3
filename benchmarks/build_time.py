"""How long would a fresh `python -m splip_core.mini build` take here? Times the costly stages' steps on a built
`--work` folder and projects the build from the shipped step counts.

    python -m benchmarks.build_time --work .cache/mini/build-r2 --threads 2 \\
        --timings weights/mini/evaluation.json --out benchmarks/results/build-time-v3.2.json

Run it on an otherwise idle machine: the stage timings a build records are upper bounds whenever other jobs shared
the cores. Pretraining steps (the build's own `pretrain`, bf16 and the world's batch mix) and prompt steps (the
shipped recipe) are timed after a warm-up, each timed run with its own setup (so the rates lean high), plus one
validation pass; the evaluation stage is taken from a build's `timings_s` (`--timings`), since it has no steps to
sample. Rendering the world is not included.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from splip_core.data import load_dataset
from splip_core.mini import pretrain as pretrain_mod
from splip_core.mini.build import BACKBONE_NAME, BuildConfig, prompt_recipe, prompt_run
from splip_core.mini.doodles import fetch_doodles
from splip_core.model import SpLIP
from splip_core.train import train, validation_map


def project(cfg: BuildConfig, pretrain_s_per_step: float, prompt_s_per_step: float, validation_s: float,
            evaluate_s: float) -> dict:
    """Seconds per stage of a fresh build with `cfg`, from per-step costs; every validation the recipe schedules
    is counted (a run stopped early by patience takes less)."""
    recipe = prompt_recipe(cfg.preset)[1] | cfg.train_overrides
    pretrain_steps = cfg.pretrain_steps + cfg.warm_restarts * cfg.continue_steps
    validations = recipe["max_steps"] // recipe["eval_every"] if recipe.get("eval_every") else 0
    stages = {"pretrain": pretrain_steps * pretrain_s_per_step,
              "train_prompts": recipe["max_steps"] * prompt_s_per_step + validations * validation_s,
              "evaluate": evaluate_s}
    return {"pretrain_steps": pretrain_steps, "prompt_steps": recipe["max_steps"], "validations": validations,
            "stages_s": {k: round(v, 1) for k, v in stages.items()}, "total_h": round(sum(stages.values()) / 3600, 2)}


def _seconds_per_step(run, steps: int, warmup: int) -> float:
    run(warmup)
    started = time.perf_counter()
    run(steps)
    return (time.perf_counter() - started) / steps


def measure(work: Path, steps: int, cfg: BuildConfig) -> dict:
    """Seconds per pretraining step, per prompt step and per validation pass, on `work`'s world and backbone."""
    world, backbone = work / "world", work / BACKBONE_NAME
    sources = {"doodles": fetch_doodles(work / "npm"), "line_fraction": cfg.line_fraction,
               "doodle_fraction": cfg.doodle_fraction, "bf16": cfg.bf16}
    pretrain_rate = _seconds_per_step(
        lambda n: pretrain_mod.pretrain(world, n, cfg.seed, cfg.pretrain_batch_size, log_every=10**9, **sources),
        steps, 10)
    data, val = load_dataset("folder", world / "train"), load_dataset("folder", world / "val")
    with tempfile.TemporaryDirectory() as tmp:
        def prompts(n: int) -> None:
            budget = replace(cfg, train_overrides={"max_steps": n, "eval_every": None, "patience": None})
            config, opts = prompt_run(backbone, data, budget, cfg.preset)
            shutil.rmtree(Path(tmp) / "run", ignore_errors=True)
            train(config, data, Path(tmp) / "run", opts, device="cpu")

        prompt_rate = _seconds_per_step(prompts, steps, 10)
        model = SpLIP.from_pretrained(Path(tmp) / "run")
        started = time.perf_counter()
        validation_map(model, val, prompt_recipe(cfg.preset)[1]["batch_size"])
        validation_s = time.perf_counter() - started
    return {"pretrain_s_per_step": round(pretrain_rate, 3), "prompt_s_per_step": round(prompt_rate, 3),
            "validation_s": round(validation_s, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="a build's --work folder (world, npm, backbone)")
    parser.add_argument("--timings", type=Path, required=True, help="an evaluation.json whose timings_s has evaluate")
    parser.add_argument("--steps", type=int, default=100, help="timed steps of each kind, after 10 of warm-up")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True, help="JSON report")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = BuildConfig()
    rates = measure(args.work, args.steps, cfg)
    evaluate_s = json.loads(args.timings.read_text())["timings_s"]["evaluate"]
    report = {"threads": args.threads, "timed_steps": args.steps, **rates, "evaluate_s": evaluate_s,
              "projection": project(cfg, **rates, evaluate_s=evaluate_s),
              "build": {k: v for k, v in asdict(cfg).items() if k != "world"}}
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report["projection"]))


if __name__ == "__main__":
    main()
