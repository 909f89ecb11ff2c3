"""Which ranking would the validation doodles choose for a built model, SpLIP and its frozen baseline? Nothing changes.

python -m benchmarks.ranking_choice --model weights/mini --work WORK [--json OUT.json] [--threads 1]

WORK is a build's --work folder of the same world (its rendered world and npm packages). Runs the build's own
calibration (splip_core/mini/calibrate.py: vocabulary, text encoder, temperature, weight, agreement on the ZS
validation view, then the seen-name offset on the GZS validation view) on the model as it is, and reports each
model's validation mAP@all by cosine and under the ranking chosen, the choice, and the offsets' GZS C@5.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from splip_core import SpLIP
from splip_core.mini.calibrate import choose_ranking, chosen_val_map, drawn_names, vocabularies
from splip_core.mini.doodles import categories, fetch_doodles

SHOWN = ("method", "temperature", "weight", "seen_offset", "agreement", "text")


def measure(model: SpLIP, work: Path) -> dict:
    """{"splip": ..., "frozen": ...}: each model's cosine and chosen validation mAP@all, its choice and offsets."""
    split = json.loads((work / "world" / "split.json").read_text())
    names = vocabularies(split, categories(fetch_doodles(work / "npm")))
    memo: dict = {}
    out = {}
    for who, m in (("splip", model), ("frozen", model.frozen_baseline())):
        choice = choose_ranking(m, work / "world", split, names, drawn_names(split), memo)
        out[who] = {"cosine_val_mAP": choice["candidates"][0]["val_mAP"], "chosen_val_mAP": chosen_val_map(choice),
                    "vocabulary": choice["vocabulary"], "ranking": {k: choice["ranking"][k] for k in SHOWN},
                    "offsets": choice["offsets"]}
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True, help="a build's --work folder of the same world")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, help="write the numbers here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = measure(SpLIP.from_pretrained(args.model), args.work)
    for who, r in out.items():
        print(f"{who}: validation mAP@all {100 * r['cosine_val_mAP']:.1f} by cosine, {100 * r['chosen_val_mAP']:.1f} "
              f"under {r['ranking']} ({r['vocabulary']} vocabulary)")
    if args.json:
        args.json.write_text(json.dumps({"model": str(args.model), **out}, indent=1) + "\n")


if __name__ == "__main__":
    main()
