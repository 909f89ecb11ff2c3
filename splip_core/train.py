"""Train SpLIP prompts on the seen classes of a dataset: `python -m splip_core.train --help`.

Every epoch writes a prompt checkpoint to OUT (loadable by `SpLIP.from_pretrained(OUT)`) and the training state
(current weights, optimizer, jigsaw solver, epoch, step, history) to OUT/training_state.*, so `--resume` continues
where a run stopped (at the last finished epoch). With validation data (--val-data) OUT holds the checkpoint with
the best validation mAP instead, and --patience stops a run that no longer improves. Data order, triplets, flips
and jigsaw permutations are drawn from generators seeded by (seed, epoch, step) and the learning rate is a function
of the step, so an interrupted and resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader
from tqdm import tqdm

from .config import SpLIPConfig, TrainOptions, read_json_object
from .configs import list_presets, load_preset
from .data import ImageDataset, SBIRData, TripletDataset, load_dataset
from .evaluate import embed_samples
from .losses import BatchFeatures, SpLIPLoss, shuffle_tiles
from .metrics import retrieval_metrics
from .model import CheckpointError, SpLIP, prompt_norms
from .ranking import Ranker
from .runtime import pick_device, run_cli, seed_everything, use_all_cores

log = logging.getLogger(__name__)
STATE_TENSORS = "training_state.safetensors"
STATE_JSON = "training_state.json"


def lr_at(step: int, opts: TrainOptions, total_steps: int) -> float:
    """Learning rate of optimiser step `step` (0-based): linear warm-up over `warmup_steps`, then constant or a
    cosine decay that reaches 0 at `total_steps`. A pure function of the step, so a resumed run follows the curve."""
    if step < opts.warmup_steps:
        return opts.lr * (step + 1) / opts.warmup_steps
    if opts.schedule == "constant":
        return opts.lr
    progress = min((step - opts.warmup_steps) / max(total_steps - opts.warmup_steps, 1), 1.0)
    return opts.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class _Progress:
    """Run state beyond the weights, saved with the training state so a resumed run continues exactly."""

    step: int = 0
    best_val: float | None = None
    bad_evals: int = 0
    stopped: bool = False
    sums: dict[str, float] = field(default_factory=dict)  # loss terms and batch stats since the last record
    counts: dict[str, int] = field(default_factory=dict)
    steps_since_record: int = 0

    def add(self, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
            self.counts[key] = self.counts.get(key, 0) + 1
        self.steps_since_record += 1

    def take(self) -> dict[str, Any]:
        """Means since the last record; resets the accumulators."""
        means = {key: total / self.counts[key] for key, total in self.sums.items()}
        means["steps"] = self.steps_since_record
        self.sums, self.counts, self.steps_since_record = {}, {}, 0
        return means


def _step_generator(seed: int, epoch: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 10_007 + step)


def _flip(batch: dict[str, Any], generator: torch.Generator) -> None:
    """Random horizontal flip of each sketch, positive and negative image, from the step's generator."""
    for key in ("sketch", "positive", "negative"):
        images = batch[key]
        mask = torch.rand(len(images), generator=generator) < 0.5
        batch[key] = torch.where(mask.view(-1, 1, 1, 1), images.flip(-1), images)


def _optimizer(params: list[torch.nn.Parameter], opts: TrainOptions) -> torch.optim.Optimizer:
    kind = torch.optim.Adam if opts.optimizer == "adam" else torch.optim.AdamW
    return kind(params, lr=opts.lr, weight_decay=opts.weight_decay)


def sample_class_subsets(labels: torch.Tensor, n_classes: int, k: int, generator: torch.Generator | None
                         ) -> torch.Tensor:
    """(B, k) class indices per image: its own label first, then k-1 other classes drawn without replacement."""
    scores = torch.rand(len(labels), n_classes, generator=generator).to(labels.device)
    scores[torch.arange(len(labels), device=labels.device), labels] = 2.0
    return scores.topk(k, dim=1).indices


def make_loss(model: SpLIP, seed: int = 0) -> SpLIPLoss:
    """The loss of `model.config.loss` over the model's seen classes: adaptive margins read the frozen CLIP's text
    features of "a photo of a {c}" (and L_class, with class_text "frozen", its text of every seen class in each
    modality's template); L_class's temperature defaults to the backbone's 1/logit_scale."""
    c = model.config.loss
    classes = list(model.config.seen_classes)
    frozen = model.frozen_baseline() if c.adaptive_margin or c.class_text == "frozen" else None
    margin_text = frozen.encode_text(classes, "photo") if c.adaptive_margin else None
    class_text = None
    if c.use_class_loss and c.class_text == "frozen":
        class_text = torch.stack([frozen.encode_text(classes, modality) for modality in ("sketch", "photo")])
    temperature = c.temperature or 1.0 / float(model.clip.logit_scale.exp())
    return SpLIPLoss(c, margin_text, model.embed_dim, temperature, seed, class_text)


class TrainingStep:
    """Runs the forward passes one batch of triplets needs for the configured loss terms, then the loss on them.

    Per-image class subsets (`prompts.text_class_sample`), jigsaw shuffles and flips are drawn from the step's
    generator, in a fixed order, so a resumed run repeats an uninterrupted one.
    """

    def __init__(self, model: SpLIP, loss_fn: SpLIPLoss):
        self.model, self.loss_fn = model, loss_fn
        self.frozen = model.frozen_baseline().eval() if loss_fn.config.photo_anchor_weight > 0 else None

    def class_subsets(self, labels: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor | None:
        """Each image's k seen classes for its text pass (one row for all images with text_class_sample_shared);
        None = all classes (the default, batch conditioning, inference, or k >= the number of classes)."""
        prompts, n_classes = self.model.config.prompts, len(self.model.config.seen_classes)
        k = prompts.text_class_sample
        if k is None or k >= n_classes or not self.model.training or not self.model.conditions_per_image:
            return None
        if prompts.text_class_sample_shared:
            row = torch.rand(n_classes, generator=generator).topk(k).indices.to(labels.device)
            return row.expand(len(labels), k)
        return sample_class_subsets(labels, n_classes, k, generator)

    def features(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None) -> BatchFeatures:
        model, labels = self.model, batch["label"]
        subset = self.class_subsets(labels, generator)
        shared = model.config.prompts.text_class_sample_shared
        negative_subset = subset if shared else self.class_subsets(batch["negative_label"], generator)
        # the class text comes with B_vt's pass anyway; L_class and the class-accuracy statistic read it
        sketch, sketch_text = model(batch["sketch"], "sketch", with_class_text=True, class_subset=subset)
        positive, positive_text = model(batch["positive"], "photo", with_class_text=True, class_subset=subset)
        negative = model(batch["negative"], "photo", class_subset=negative_subset)
        if subset is None:
            targets = labels
        else:  # the class's row in the image's subset; -100 (cross-entropy's ignore index) where it is absent
            hit = subset == labels[:, None]
            targets = torch.where(hit.any(1), hit.int().argmax(1), torch.full_like(labels, -100))
        feats = BatchFeatures(sketch, positive, negative, sketch_text, positive_text, targets)
        if self.frozen is not None:
            photos = torch.cat([batch["positive"], batch["negative"]])
            with torch.no_grad():
                feats.frozen_photos = self.frozen.to(photos.device)(photos, "photo")
        if self.loss_fn.solver is not None:
            perms = self.loss_fn.permutations
            y = torch.randint(len(perms), labels.shape, generator=generator).to(labels.device)
            shuffled = shuffle_tiles(batch["sketch"], perms[y], self.loss_fn.config.jigsaw_grid)
            feats.shuffled, feats.permutation = model(shuffled, "sketch", class_subset=subset), y
        return feats

    def __call__(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None,
                 stats: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
        return self.loss_fn(self.features(batch, generator), batch, stats)


def validation_map(model: SpLIP, val_data: SBIRData, batch_size: int = 64) -> float:
    """Sketch -> photo mAP@all over all of `val_data`'s sketches and photos, in eval mode with the model's
    configured inference mode and ranking (the model is left in eval mode)."""
    model.eval()
    queries, query_samples = embed_samples(model, val_data.sketches, "sketch", batch_size, desc="val sketches")
    gallery, gallery_samples = embed_samples(model, val_data.photos, "photo", batch_size, desc="val photos")
    ranker = Ranker.of(model)
    queries, gallery = ranker.vectors(queries, "sketch"), ranker.vectors(gallery, "photo")
    result = retrieval_metrics(queries, [s.label for s in query_samples], gallery,
                               [s.label for s in gallery_samples], ks=(), map_at=())
    return result["mAP@all"]


def _norm_sample(triplets: TripletDataset, count: int = 8) -> torch.Tensor:
    """A fixed batch of training sketches (the first anchors) on which the prompt norms are reported."""
    images = ImageDataset(triplets.anchors[:count], triplets.transform)
    return torch.stack([images[i][0] for i in range(len(images))])


def _save_state(out: Path, model: SpLIP, loss_fn: SpLIPLoss, optimizer: torch.optim.Optimizer, epoch: int,
                history: list[dict], opts: TrainOptions, progress: _Progress) -> None:
    """Current weights, optimizer tensors and the solver in safetensors, the rest in JSON (no pickles). The
    current weights live here because OUT's checkpoint is the best validated one when there is validation data."""
    tensors = {f"model.{k}": v for k, v in model.trainable_state_dict().items()}
    tensors.update({f"solver.{k}": v.detach().contiguous().cpu() for k, v in loss_fn.state_dict().items()})
    optim = optimizer.state_dict()
    for index, slots in optim["state"].items():
        for key, value in slots.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).contiguous().cpu()
    tmp = out / (STATE_TENSORS + ".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(out / STATE_TENSORS)
    meta = {"epoch": epoch, "history": history, "param_groups": optim["param_groups"],
            "config": model.config.to_dict(), "options": opts.__dict__, "progress": progress.__dict__}
    (out / STATE_JSON).write_text(json.dumps(meta, indent=2))


def _load_state(out: Path, model: SpLIP, loss_fn: SpLIPLoss,
                optimizer: torch.optim.Optimizer) -> tuple[int, list, _Progress]:
    meta_path, tensor_path = out / STATE_JSON, out / STATE_TENSORS
    if not meta_path.is_file() or not tensor_path.is_file():
        raise CheckpointError(f"{out}: nothing to resume (no {STATE_JSON} / {STATE_TENSORS})")
    meta = json.loads(meta_path.read_text())
    if meta["config"] != model.config.to_dict():
        raise CheckpointError(f"{out}: the run to resume used another config; start a new --out directory")
    if "progress" not in meta:
        raise CheckpointError(f"{out}: training state from an older version without the step count; start a new "
                              "--out directory")
    tensors = load_file(str(tensor_path))
    model.load_trainable_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")},
                                    str(tensor_path))
    loss_fn.load_state_dict({k[len("solver."):]: v for k, v in tensors.items() if k.startswith("solver.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, slot = key.split(".", 2)
            state.setdefault(int(index), {})[slot] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return int(meta["epoch"]), list(meta["history"]), _Progress(**meta["progress"])


def train(config: SpLIPConfig, data: SBIRData, out: str | Path, opts: TrainOptions | None = None,
          device: str = "auto", resume: bool = False, push_to_hub: str | None = None,
          val_data: SBIRData | None = None) -> list[dict]:
    """Train prompts on `data.seen`; returns the history: one record per epoch, or per validation with `val_data`.

    A record holds the mean loss terms and batch statistics since the previous record, the learning rate, the norms
    of the learnt prompts beside the backbone's token norms (`prompt_norms`), and with `val_data` the validation
    mAP@all. Without `val_data` OUT holds the latest weights after every epoch; with it OUT holds the best validated
    weights, and `patience` validations without improvement stop the run.
    """
    opts = opts or TrainOptions()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dev = pick_device(device)
    seed_everything(opts.seed)
    if list(config.seen_classes) != data.seen:
        if config.seen_classes:
            log.warning("config.seen_classes differ from the dataset's seen classes: using the dataset's")
        config = config.replace(seen_classes=data.seen)
    model = SpLIP(config).to(dev)
    loss_fn = make_loss(model, seed=opts.seed).to(dev)
    step_loss = TrainingStep(model, loss_fn)
    params = [p for p in (*model.parameters(), *loss_fn.parameters()) if p.requires_grad]
    optimizer = _optimizer(params, opts)
    start, history, progress = (_load_state(out, model, loss_fn, optimizer) if resume else (0, [], _Progress()))
    triplets = TripletDataset(data, data.seen, model.transform, level=opts.level, seed=opts.seed,
                              instance_positive=opts.instance_positive)
    steps_per_epoch = math.ceil(len(triplets) / opts.batch_size)
    if opts.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, opts.max_steps_per_epoch)
    budget = opts.epochs * steps_per_epoch if opts.max_steps is None else min(opts.max_steps,
                                                                              opts.epochs * steps_per_epoch)
    norm_sample = _norm_sample(triplets)
    model.card_info = {"datasets": opts.datasets or None,
                       "description": f"Trained for {opts.epochs} epochs on {len(data.seen)} seen classes."}
    use_amp = opts.amp and dev.type == "cuda"
    log.info("training %s trainable tensors on %d triplet anchors, %s, %d steps", sum(p.numel() for p in params),
             len(triplets), dev, budget)
    started = time.perf_counter()

    def record(epoch: int) -> None:
        """Append the means since the last record, the prompt norms and (with val_data) a validation; OUT gets
        the latest weights, or the best validated ones."""
        nonlocal started
        entry = progress.take()
        entry.update(epoch=epoch + 1, global_step=progress.step, seconds=round(time.perf_counter() - started, 2),
                     skipped_images=len(triplets.skipped))
        entry.update({f"norm_{k}": v for k, v in prompt_norms(model, norm_sample, "sketch").items()})
        if val_data is None:
            model.eval()
            model.save_pretrained(out)
        else:
            entry["val_mAP"] = validation_map(model, val_data, opts.batch_size)
            if progress.best_val is None or entry["val_mAP"] > progress.best_val:
                progress.best_val, progress.bad_evals = entry["val_mAP"], 0
                model.save_pretrained(out)
            else:
                progress.bad_evals += 1
                progress.stopped = opts.patience is not None and progress.bad_evals >= opts.patience
            entry["best_val_mAP"] = progress.best_val
        history.append(entry)
        log.info("record: %s", {k: round(v, 4) if isinstance(v, float) else v for k, v in entry.items()})
        model.train()
        started = time.perf_counter()

    epoch = start
    for epoch in range(start, opts.epochs):
        if progress.stopped or progress.step >= budget:
            break
        triplets.set_epoch(epoch)
        order = torch.randperm(len(triplets), generator=torch.Generator().manual_seed(opts.seed * 1000 + epoch))
        loader = DataLoader(triplets, batch_size=opts.batch_size, sampler=order.tolist(), drop_last=False,
                            num_workers=opts.workers, persistent_workers=False)
        model.train()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{opts.epochs}", leave=False, dynamic_ncols=True)
        for step, batch in enumerate(bar):
            if step >= steps_per_epoch or progress.step >= budget:
                break
            generator = _step_generator(opts.seed, epoch, step)
            if opts.hflip:
                _flip(batch, generator)
            batch = {k: v.to(dev) for k, v in batch.items()}
            lr = lr_at(progress.step, opts, budget)
            for group in optimizer.param_groups:
                group["lr"] = lr
            stats: dict[str, float] = {}
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
                terms = step_loss(batch, generator, stats)
            optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, opts.grad_clip or math.inf)
            optimizer.step()
            progress.step += 1
            progress.add({**{k: float(v.detach()) for k, v in terms.items()}, **stats,
                          "grad_norm": float(grad_norm), "lr": lr})
            bar.set_postfix(loss=f"{progress.sums['total'] / progress.counts['total']:.4f}")
            if val_data is not None and opts.eval_every and progress.step % opts.eval_every == 0:
                record(epoch)
                if progress.stopped:
                    break
        if progress.steps_since_record and (val_data is None or not opts.eval_every):
            record(epoch)
        _save_state(out, model, loss_fn, optimizer, epoch + 1, history, opts, progress)
    if progress.steps_since_record:  # validate the final weights when the last steps were not validated yet
        record(epoch)
        _save_state(out, model, loss_fn, optimizer, epoch + 1, history, opts, progress)
    if push_to_hub:
        model.push_to_hub(push_to_hub)
    return history


PRECEDENCE = """precedence, lowest first: the built-in defaults (the paper's method, see --help of each flag), then
--preset, then the --config JSON (model fields only), then the flags given on this command line."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m splip_core.train", description=__doc__, epilog=PRECEDENCE,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = TrainOptions()
    p.add_argument("--preset", choices=list_presets(),
                   help="named model + training preset from splip_core/configs (overridden by --config and flags)")
    p.add_argument("--config", help="SpLIPConfig JSON (backbone, prompts, loss weights); default: ViT-B-32 openai")
    p.add_argument("--data", required=True, help="dataset root directory")
    p.add_argument("--dataset", required=True, choices=["sketchy", "tuberlin", "quickdraw", "folder"])
    p.add_argument("--split", help="zero-shot split name or class-list file (default: the dataset's standard one)")
    p.add_argument("--val-data", metavar="ROOT",
                   help="validation dataset root (same --dataset reader): sketch->photo mAP@all over all its classes "
                        "picks the checkpoint kept in --out")
    p.add_argument("--out", required=True, help="output directory: prompt checkpoint + training state")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument("--epochs", type=int, help=f"default {d.epochs}")
    p.add_argument("--max-steps", type=int, help="total optimiser steps across epochs (default: no cap)")
    p.add_argument("--batch-size", type=int, help=f"default {d.batch_size}")
    p.add_argument("--lr", type=float, help=f"peak learning rate (default {d.lr})")
    p.add_argument("--optimizer", choices=["adam", "adamw"], help=f"default {d.optimizer}")
    p.add_argument("--weight-decay", type=float, help=f"default {d.weight_decay}")
    p.add_argument("--schedule", choices=["constant", "cosine"], help=f"learning-rate schedule (default {d.schedule})")
    p.add_argument("--warmup-steps", type=int, help=f"linear warm-up steps (default {d.warmup_steps})")
    p.add_argument("--grad-clip", type=float, help="max global gradient norm (default: no clipping)")
    p.add_argument("--eval-every", type=int, help="steps between validations (default: after every epoch)")
    p.add_argument("--patience", type=int, help="validations without improvement before stopping (default: never)")
    p.add_argument("--seed", type=int, help=f"default {d.seed}")
    p.add_argument("--level", choices=["class", "instance"],
                   help="triplet positives: same class (ZS/GZS) or the paired photo (FG); default class")
    p.add_argument("--instance-positive", type=float,
                   help="class level: probability that a sketch with a paired photo takes it as the positive "
                        f"(default {d.instance_positive})")
    p.add_argument("--no-hflip", action="store_true", help="turn off random horizontal flips")
    p.add_argument("--workers", type=int, help="DataLoader worker processes (default 0)")
    p.add_argument("--no-amp", action="store_true", help="no bfloat16 autocast on CUDA")
    p.add_argument("--max-steps-per-epoch", type=int, help="cap the steps of each epoch (smoke tests)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--push-to-hub", metavar="REPO", help="upload the final checkpoint to this Hub repo")
    return p


OPTION_FLAGS = ("epochs", "max_steps", "batch_size", "lr", "optimizer", "weight_decay", "schedule", "warmup_steps",
                "grad_clip", "eval_every", "patience", "seed", "level", "instance_positive", "workers",
                "max_steps_per_epoch")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    use_all_cores()
    data = load_dataset(args.dataset, args.data, args.split)
    val_data = load_dataset(args.dataset, args.val_data) if args.val_data else None
    preset = load_preset(args.preset) if args.preset else {"model": {}, "train": {}}
    overrides = read_json_object(args.config) if args.config else {}
    config = SpLIPConfig.from_dict({**preset["model"], "seen_classes": data.seen}).updated(overrides)
    flags = {name: getattr(args, name) for name in OPTION_FLAGS if getattr(args, name) is not None}
    flags.update({"hflip": False} if args.no_hflip else {})
    flags.update({"amp": False} if args.no_amp else {})
    opts = TrainOptions(**{**preset["train"], **flags, "datasets": [args.dataset]})
    history = train(config, data, args.out, opts, device=args.device, resume=args.resume,
                    push_to_hub=args.push_to_hub, val_data=val_data)
    print(json.dumps(history[-1] if history else {}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
