"""Seconds per SpLIP training step (forward + backward + Adam) for a backbone, batch size and class count.

    python -m benchmarks.train_step --backbone ViT-B-32 --batch-size 8 --classes 100 [--conditioning instance]

Random weights (timing only). Prints one JSON line: median and mean over the timed steps, after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from splip_core import SpLIP, SpLIPConfig
from splip_core.runtime import pick_device, use_all_cores
from splip_core.train import TrainingStep, make_loss


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="ViT-B-32")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--classes", type=int, default=100, help="number of seen classes (Sketchy: 100-104)")
    p.add_argument("--conditioning", choices=["instance", "batch"], default="instance")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    use_all_cores()
    device = pick_device(args.device)
    torch.manual_seed(0)
    classes = [f"class {i}" for i in range(args.classes)]
    config = SpLIPConfig.from_dict({"backbone": {"name": args.backbone, "pretrained": None}, "seen_classes": classes,
                                    "prompts": {"train_text_conditioning": args.conditioning}})
    model = SpLIP(config).to(device).train()
    loss_fn = make_loss(model).to(device)
    step_loss = TrainingStep(model, loss_fn)
    params = [p for p in (*model.parameters(), *loss_fn.parameters()) if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    size = model.transform.transforms[0].size
    size = size if isinstance(size, int) else size[0]
    n = args.batch_size
    batch = {k: torch.randn(n, 3, size, size, device=device) for k in ("sketch", "positive", "negative")}
    batch["label"] = torch.arange(n, device=device) % args.classes
    batch["negative_label"] = (batch["label"] + 1) % args.classes
    times = []
    for step in range(args.steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        terms = step_loss(batch, torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        terms["total"].backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step:  # step 0 is the warm-up
            times.append(time.perf_counter() - start)
    print(json.dumps({"backbone": args.backbone, "batch_size": n, "classes": args.classes,
                      "conditioning": args.conditioning, "device": str(device), "threads": torch.get_num_threads(),
                      "median_s": round(statistics.median(times), 3), "mean_s": round(statistics.mean(times), 3)}))


if __name__ == "__main__":
    main()
