"""Train SpLIP prompts on the seen classes of a dataset: `python -m splip_core.train --help`.

Every epoch writes a prompt checkpoint to OUT (loadable by `SpLIP.from_pretrained(OUT)`) and the training state
(optimizer, jigsaw solver, epoch, history) to OUT/training_state.*, so `--resume` continues where a run stopped.
Data order, triplets, flips and jigsaw permutations are drawn from generators seeded by (seed, epoch, step), so an
interrupted and resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader
from tqdm import tqdm

from .config import SpLIPConfig
from .data import SBIRData, TripletDataset, load_dataset
from .losses import SpLIPLoss
from .model import WEIGHTS_FILE, CheckpointError, SpLIP
from .runtime import pick_device, run_cli, seed_everything, use_all_cores

log = logging.getLogger(__name__)
STATE_TENSORS = "training_state.safetensors"
STATE_JSON = "training_state.json"


@dataclass
class TrainOptions:
    epochs: int = 60  # [S2]
    batch_size: int = 192  # [S2]
    lr: float = 1e-3  # [S2]
    optimizer: str = "adam"  # [S2] Adam; "adamw" for decoupled weight decay
    weight_decay: float = 0.0
    seed: int = 0
    level: str = "class"  # "class" (ZS/GZS) or "instance" (FG)
    hflip: bool = True
    workers: int = 0
    amp: bool = True  # bfloat16 autocast on CUDA only
    max_steps_per_epoch: int | None = None
    datasets: list[str] = field(default_factory=list)


def _step_generator(seed: int, epoch: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 10_007 + step)


def _flip(batch: dict[str, Any], generator: torch.Generator) -> None:
    """Random horizontal flip of each sketch, positive and negative image, from the step's generator."""
    for key in ("sketch", "positive", "negative"):
        images = batch[key]
        mask = torch.rand(len(images), generator=generator) < 0.5
        batch[key] = torch.where(mask.view(-1, 1, 1, 1), images.flip(-1), images)


def _optimizer(params: list[torch.nn.Parameter], opts: TrainOptions) -> torch.optim.Optimizer:
    if opts.optimizer == "adam":
        return torch.optim.Adam(params, lr=opts.lr, weight_decay=opts.weight_decay)
    if opts.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=opts.lr, weight_decay=opts.weight_decay)
    raise ValueError(f"optimizer must be 'adam' or 'adamw', got {opts.optimizer!r}")


def _save_state(out: Path, model: SpLIP, loss_fn: SpLIPLoss, optimizer: torch.optim.Optimizer, epoch: int,
                history: list[dict], opts: TrainOptions) -> None:
    """Optimizer tensors and the solver in safetensors, the rest in JSON (no pickles)."""
    tensors = {f"solver.{k}": v.detach().contiguous().cpu() for k, v in loss_fn.state_dict().items()}
    optim = optimizer.state_dict()
    for index, slots in optim["state"].items():
        for key, value in slots.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).contiguous().cpu()
    tmp = out / (STATE_TENSORS + ".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(out / STATE_TENSORS)
    meta = {"epoch": epoch, "history": history, "param_groups": optim["param_groups"],
            "config": model.config.to_dict(), "options": opts.__dict__}
    (out / STATE_JSON).write_text(json.dumps(meta, indent=2))


def _load_state(out: Path, model: SpLIP, loss_fn: SpLIPLoss, optimizer: torch.optim.Optimizer) -> tuple[int, list]:
    meta_path, tensor_path = out / STATE_JSON, out / STATE_TENSORS
    if not meta_path.is_file() or not tensor_path.is_file():
        raise CheckpointError(f"{out}: nothing to resume (no {STATE_JSON} / {STATE_TENSORS})")
    meta = json.loads(meta_path.read_text())
    if meta["config"] != model.config.to_dict():
        raise CheckpointError(f"{out}: the run to resume used another config; start a new --out directory")
    tensors = load_file(str(tensor_path))
    model.load_trainable_state_dict(load_file(str(out / WEIGHTS_FILE)), str(out / WEIGHTS_FILE))
    loss_fn.load_state_dict({k[len("solver."):]: v for k, v in tensors.items() if k.startswith("solver.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, slot = key.split(".", 2)
            state.setdefault(int(index), {})[slot] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return int(meta["epoch"]), list(meta["history"])


def train(config: SpLIPConfig, data: SBIRData, out: str | Path, opts: TrainOptions | None = None,
          device: str = "auto", resume: bool = False, push_to_hub: str | None = None) -> list[dict]:
    """Train prompts on `data.seen`; returns the per-epoch history of mean loss terms."""
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
    loss_fn = SpLIPLoss(model, data.seen, seed=opts.seed).to(dev)
    params = [p for p in (*model.parameters(), *loss_fn.parameters()) if p.requires_grad]
    optimizer = _optimizer(params, opts)
    start, history = (_load_state(out, model, loss_fn, optimizer) if resume else (0, []))
    triplets = TripletDataset(data, data.seen, model.transform, level=opts.level, seed=opts.seed)
    model.card_info = {"datasets": opts.datasets or None,
                       "description": f"Trained for {opts.epochs} epochs on {len(data.seen)} seen classes."}
    use_amp = opts.amp and dev.type == "cuda"
    log.info("training %s trainable tensors on %d triplet anchors, %s", sum(p.numel() for p in params),
             len(triplets), dev)
    for epoch in range(start, opts.epochs):
        triplets.set_epoch(epoch)
        order = torch.randperm(len(triplets), generator=torch.Generator().manual_seed(opts.seed * 1000 + epoch))
        loader = DataLoader(triplets, batch_size=opts.batch_size, sampler=order.tolist(), drop_last=False,
                            num_workers=opts.workers, persistent_workers=False)
        model.train()
        sums: dict[str, float] = {}
        steps = 0
        started = time.perf_counter()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{opts.epochs}", leave=False, dynamic_ncols=True)
        for step, batch in enumerate(bar):
            if opts.max_steps_per_epoch is not None and step >= opts.max_steps_per_epoch:
                break
            generator = _step_generator(opts.seed, epoch, step)
            if opts.hflip:
                _flip(batch, generator)
            batch = {k: v.to(dev) for k, v in batch.items()}
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
                terms = loss_fn(model, batch, generator)
            optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            optimizer.step()
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach())
            steps += 1
            bar.set_postfix(loss=f"{sums['total'] / steps:.4f}")
        record = {k: v / max(steps, 1) for k, v in sums.items()}
        record.update(epoch=epoch + 1, steps=steps, seconds=round(time.perf_counter() - started, 2),
                      skipped_images=len(triplets.skipped))
        history.append(record)
        log.info("epoch %d: %s", epoch + 1, {k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()})
        model.eval()
        model.save_pretrained(out)
        _save_state(out, model, loss_fn, optimizer, epoch + 1, history, opts)
    if push_to_hub:
        model.push_to_hub(push_to_hub)
    return history


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m splip_core.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="SpLIPConfig JSON (backbone, prompts, loss weights); default: ViT-B-32 openai")
    p.add_argument("--data", required=True, help="dataset root directory")
    p.add_argument("--dataset", required=True, choices=["sketchy", "tuberlin", "quickdraw", "folder"])
    p.add_argument("--split", help="zero-shot split name or class-list file (default: the dataset's standard one)")
    p.add_argument("--out", required=True, help="output directory: prompt checkpoint + training state")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument("--epochs", type=int, default=TrainOptions.epochs)
    p.add_argument("--batch-size", type=int, default=TrainOptions.batch_size)
    p.add_argument("--lr", type=float, default=TrainOptions.lr)
    p.add_argument("--optimizer", choices=["adam", "adamw"], default=TrainOptions.optimizer)
    p.add_argument("--weight-decay", type=float, default=TrainOptions.weight_decay)
    p.add_argument("--seed", type=int, default=TrainOptions.seed)
    p.add_argument("--level", choices=["class", "instance"], default="class",
                   help="triplet positives: same class (ZS/GZS) or the paired photo (FG)")
    p.add_argument("--no-hflip", action="store_true", help="turn off random horizontal flips")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--no-amp", action="store_true", help="no bfloat16 autocast on CUDA")
    p.add_argument("--max-steps-per-epoch", type=int, help="cap the steps of each epoch (smoke tests)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--push-to-hub", metavar="REPO", help="upload the final checkpoint to this Hub repo")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    use_all_cores()
    data = load_dataset(args.dataset, args.data, args.split)
    overrides = json.loads(Path(args.config).read_text()) if args.config else {}
    if args.config and not isinstance(overrides, dict):
        raise ValueError(f"{args.config}: a config file is a JSON object")
    config = SpLIPConfig.from_dict({**overrides, "seen_classes": data.seen})
    opts = TrainOptions(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                        weight_decay=args.weight_decay, seed=args.seed, level=args.level, hflip=not args.no_hflip,
                        workers=args.workers, amp=not args.no_amp, max_steps_per_epoch=args.max_steps_per_epoch,
                        datasets=[args.dataset])
    history = train(config, data, args.out, opts, device=args.device, resume=args.resume,
                    push_to_hub=args.push_to_hub)
    print(json.dumps(history[-1] if history else {}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
