"""Doodle benchmark: do mouse doodles drawn on the demo's page find photos of the thing drawn?

python -m benchmarks.doodle --model weights/mini [--mode faithful|fast] [--threads 1] [--json OUT] [--save-png DIR]

Each doodle of `benchmarks/doodles.json` (strokes of [x, y] points on the 512x512 canvas) becomes a query two ways,
in the same run: the stroke path, what the page sends now (the strokes as Quick, Draw! `[[xs, ys], ...]` through
`splip_core.stroke_sketch`, simplified and drawn like the dataset's bitmaps), and the canvas path, what it sent
before (the strokes drawn as the canvas draws them, black round-capped lines of the brush width on white, then
flattened and cropped to the ink or redrawn as a doodle bitmap from the pixels; `--canvas-side` scales the strokes
and the brush to another canvas). Either is redrawn as a doodle bitmap when the model asks (`sketch_pixels`) and
searched in the GZS gallery (every photo under `<model>/gallery/photo/<concept>/`) by SpLIP and by its frozen CLIP
baseline, each ranking photos as the model's `config.ranking` says (the demo's ranking; `--ranking cosine`: the
paper's cosine). Reported per path: photo-level hit@1/@5 (the doodle's concept is the concept of one of the top-k
photos) and concept-level hit@1/@5 (concepts ranked by their best photo's score), concept top-5 with its
concept-clustered 95% CI. Doodles of a concept with no gallery folder count as misses and are listed.

Early retrieval: each doodle is replayed stroke by stroke and searched after every stroke; the rank of its concept
per prefix gives m@A (area under the ranking-percentile curve) and m@B (area under the 1/rank curve) of Bhunia et
al., "Sketch Less for More" (CVPR 2020), over concepts (docs/EARLY_RETRIEVAL.md), and "strokes until top-5".
SpLIP - frozen per path and strokes - canvas per model, doodle by doodle, come with concept-clustered 95% CIs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from splip_core import SpLIP, stroke_sketch
from splip_core.config import RankingConfig
from splip_core.gallery import Gallery
from splip_core.metrics import format_difference, paired_bootstrap
from splip_core.mini.build import results_row
from splip_core.names import folder_name
from splip_core.preprocess import drawn_sketch, load_image
from splip_core.ranking import Ranker

REPO = Path(__file__).resolve().parents[1]

DOODLES = Path(__file__).with_name("doodles.json")
KS = (1, 5)
PATHS = ("strokes", "canvas")
Query = Callable[[Sequence[Sequence[Sequence[int]]]], Image.Image | None]  # a doodle's first strokes -> its query


def load_doodles(path: str | os.PathLike = DOODLES) -> dict:
    """The doodle file as a dict: about, canvas (side in px), brush (width in px), doodles."""
    return json.loads(Path(path).read_text())


def as_drawing(strokes: Sequence[Sequence[Sequence[int]]]) -> list[list[list[int]]]:
    """A doodle's strokes (lists of [x, y] points) as a Quick, Draw! drawing, [[xs, ys], ...]: what the page
    sends after each stroke (without its timestamps)."""
    return [[[x for x, _ in stroke], [y for _, y in stroke]] for stroke in strokes]


def render(strokes: Sequence[Sequence[Sequence[int]]], canvas: int = 512, brush: int = 6) -> Image.Image:
    """The strokes as the Sketchpad shows them: an RGBA white canvas with black polylines `brush` px wide, round caps
    and joins (a disc at every point); a one-point stroke is a dot."""
    image = Image.new("RGBA", (canvas, canvas), (255, 255, 255, 255))
    draw = ImageDraw.Draw(image)
    for stroke in strokes:
        points = [tuple(p) for p in stroke]
        if len(points) > 1:
            draw.line(points, fill="black", width=brush)
        for x, y in points:  # the disc covers the same `brush` pixel rows/columns as the line through (x, y)
            draw.ellipse((x - brush // 2, y - brush // 2, x - brush // 2 + brush - 1, y - brush // 2 + brush - 1),
                         fill="black")
    return image


def drawn(strokes: Sequence[Sequence[Sequence[int]]], spec: dict, side: int) -> Image.Image:
    """The strokes as a `side`-pixel canvas shows them: coordinates and brush scaled from the doodle file's canvas,
    as Gradio's editor, which fits any canvas into the same space on screen, records the same hand movement."""
    scale = side / spec["canvas"]
    scaled = [[(x * scale, y * scale) for x, y in stroke] for stroke in strokes]
    return render(scaled, side, max(1, round(spec["brush"] * scale)))


def canvas_to_sketch(image: Image.Image, pixels: int | None = None) -> Image.Image | None:
    """What the demo searches for a canvas: flattened on white, cropped to the ink (or, with `pixels`, redrawn as a
    doodle bitmap, as a model with `sketch_pixels` asks); None for a blank canvas."""
    return drawn_sketch(load_image(image), pixels=pixels)


def concept_ranking(scores: np.ndarray, labels: Sequence[str]) -> list[str]:
    """Distinct labels ordered by the best score of any of their photos, best first."""
    best: dict[str, float] = {}
    for score, label in zip(scores.tolist(), labels, strict=True):
        best[label] = max(score, best.get(label, -np.inf))
    return sorted(best, key=lambda label: -best[label])


def hit_rates(rankings: Sequence[Sequence[str]], truths: Sequence[str], ks: Sequence[int] = KS) -> dict[int, float]:
    """For each k, the fraction of queries whose true label is among the first k entries of their ranking."""
    if len(rankings) != len(truths) or not truths:
        raise ValueError(f"need one ranking per query and at least one query, got {len(rankings)} and {len(truths)}")
    return {k: sum(t in list(r[:k]) for r, t in zip(rankings, truths, strict=True)) / len(truths) for k in ks}


def evaluate(model: SpLIP, ranker: Ranker, sketches: list[Image.Image], gallery: Gallery, truths: list[str]) -> dict:
    """Hit rates of one model: photo level (labels of the top photos) and concept level (best photo per concept),
    and each query's concept top-5 hit (for CIs)."""
    queries = ranker.vectors(model.encode_sketch(sketches), "sketch").numpy()
    scores = queries @ gallery.vectors.T
    labels = [item.label for item in gallery.items]
    photo_rankings = [[labels[i] for i in np.argsort(-row, kind="stable")[: max(KS)]] for row in scores]
    concept_rankings = [concept_ranking(row, labels) for row in scores]
    return {
        "photo_hit": hit_rates(photo_rankings, truths),
        "concept_hit": hit_rates(concept_rankings, truths),
        "top3": [r[:3] for r in concept_rankings],
        "concept_top5": [float(t in r[:5]) for r, t in zip(concept_rankings, truths, strict=True)],
    }


def m_at_a(ranks: Sequence[int], n_concepts: int) -> float:
    """m@A of one drawing (Bhunia et al., CVPR 2020, on concepts): the mean over its stroke prefixes of the ranking
    percentile (n - rank) / (n - 1), the area under the percentile-vs-completion curve; 1 = first from stroke one."""
    if not ranks or n_concepts < 2:
        raise ValueError(f"need at least one prefix and two concepts, got {len(ranks)} and {n_concepts}")
    return float(np.mean([max(n_concepts - r, 0) / (n_concepts - 1) for r in ranks]))


def m_at_b(ranks: Sequence[int]) -> float:
    """m@B of one drawing: the mean over its stroke prefixes of 1 / rank, the area under the reciprocal-rank curve."""
    if not ranks:
        raise ValueError("need at least one prefix")
    return float(np.mean([1 / r for r in ranks]))


def strokes_until(ranks: Sequence[int], k: int = 5) -> int | None:
    """The number of strokes from which the concept stays in the top k to the end; None if the finished drawing
    misses the top k."""
    if not ranks or ranks[-1] > k:
        return None
    first = len(ranks)
    while first > 1 and ranks[first - 2] <= k:
        first -= 1
    return first


def prefix_ranks(model: SpLIP, ranker: Ranker, doodles: Sequence[dict], gallery: Gallery,
                 query: Query) -> list[list[int]]:
    """For each doodle, the rank of its concept after each stroke, its first strokes made a query by `query` and
    ranked as the demo's live strip ranks it (`Gallery.concept_rank`); a concept the gallery lacks, or a first
    stroke the canvas path reads as blank, ranks past the last."""
    missing = len(gallery.labels) + 1
    out = []
    for doodle in doodles:
        strokes = doodle["strokes"]
        sketches = [query(strokes[:i]) for i in range(1, len(strokes) + 1)]
        kept = [s for s in sketches if s is not None]  # a first stroke of a few pixels can read as blank
        ranks = [gallery.concept_rank(vector, folder_name(doodle["concept"])) or missing
                 for vector in ranker.vectors(model.encode_sketch(kept), "sketch").numpy()]
        out.append([missing] * (len(sketches) - len(kept)) + ranks)
    return out


def early_retrieval(ranks: dict[str, list[list[int]]], concepts: Sequence[str], n_concepts: int,
                    boot: int = 2000) -> dict:
    """m@A, m@B and strokes until top-5 of each model, with concept-clustered 95% CIs (each model's mean, and SpLIP
    minus frozen CLIP for m@A and m@B)."""
    report: dict = {}
    per = {name: {"m@A": np.array([m_at_a(r, n_concepts) for r in rs]), "m@B": np.array([m_at_b(r) for r in rs])}
           for name, rs in ranks.items()}
    for name, rs in ranks.items():
        until = [strokes_until(r) for r in rs]
        found = [u for u in until if u is not None]
        report[name] = {metric: _mean_ci(values, concepts, boot) for metric, values in per[name].items()}
        report[name]["strokes_until_top5"] = {
            "median": float(np.median(found)) if found else None,
            "found_at_the_end": len(found) / len(rs),
            "found_before_the_last_stroke": sum(u is not None and u < len(r) for u, r in zip(until, rs,
                                                                                                strict=True)) / len(rs)}
    names = list(ranks)
    if len(names) == 2:
        report["difference"] = {metric: paired_bootstrap(per[names[0]][metric], per[names[1]][metric], concepts,
                                                         boot) for metric in ("m@A", "m@B")}
    return report


def headline_rows(report: dict, path: str = "strokes") -> list[str]:
    """The README's early-retrieval rows of a `--json` report (one path of it; a report from before the stroke
    path has only the canvas's, at its top level), in the columns of the results table (frozen, SpLIP,
    SpLIP - frozen [95% CI], chance, drawings; %). Chance: a random ranking of the G gallery concepts, whose
    percentile averages 1/2 and whose reciprocal rank averages H_G / G."""
    early, n = report.get("paths", {path: report})[path]["early_retrieval"], report["n_gallery_concepts"]
    chance = {"m@A": 0.5, "m@B": sum(1 / r for r in range(1, n + 1)) / n}
    rows = []
    for metric in ("m@A", "m@B"):
        rows.append(results_row("mouse doodles, stroke by stroke", metric, early["frozen CLIP"][metric]["mean"],
                                early["SpLIP"][metric]["mean"], early["difference"][metric], chance[metric],
                                report["n_doodles"]))
    return rows


def _mean_ci(values: np.ndarray, concepts: Sequence[str], boot: int) -> dict:
    ci = paired_bootstrap(values, np.zeros_like(values), concepts, boot)
    return {"mean": ci["mean_difference"], "ci_low": ci["ci_low"], "ci_high": ci["ci_high"]}


def queries(path: str, spec: dict, side: int, pixels: int | None) -> Query:
    """How a doodle's first strokes become a query on `path`: "strokes", as the page sends them now, or "canvas",
    drawn on a `side`-px canvas as the page sent it before."""
    if path == "strokes":
        return lambda strokes: stroke_sketch(as_drawing(strokes), pixels)
    return lambda strokes: canvas_to_sketch(drawn(strokes, spec, side), pixels)


def run_path(models: dict, galleries: dict, rankers: dict, doodles: list[dict], query: Query, boot: int) -> dict:
    """Both models' hit rates (concept top-5 with its CI) and early retrieval for one path."""
    sketches = [query(d["strokes"]) for d in doodles]
    blank = [d["id"] for d, s in zip(doodles, sketches, strict=True) if s is None]
    if blank:
        raise ValueError(f"doodles {blank} become blank queries")
    truths, concepts = [folder_name(d["concept"]) for d in doodles], [d["concept"] for d in doodles]
    results = {name: evaluate(model, rankers[name], sketches, galleries[name], truths)
               for name, model in models.items()}
    for result in results.values():
        result["concept_top5_ci"] = _mean_ci(np.array(result["concept_top5"]), concepts, boot)
    ranks = {name: prefix_ranks(model, rankers[name], doodles, galleries[name], query)
             for name, model in models.items()}
    return {"sketches": sketches, "results": results, "ranks": ranks,
            "early_retrieval": early_retrieval(ranks, concepts, len(set(galleries["SpLIP"].labels)), boot)}


def path_difference(a: dict, b: dict, concepts: Sequence[str], n_concepts: int, boot: int) -> dict:
    """Path a - path b for each model, doodle by doodle: concept top-5, m@A, m@B (concept-clustered CIs)."""
    out = {}
    for name in a["results"]:
        per = {path: {"concept top-5": np.array(run["results"][name]["concept_top5"]),
                      "m@A": np.array([m_at_a(r, n_concepts) for r in run["ranks"][name]]),
                      "m@B": np.array([m_at_b(r) for r in run["ranks"][name]])} for path, run in (("a", a), ("b", b))}
        out[name] = {metric: paired_bootstrap(per["a"][metric], per["b"][metric], concepts, boot)
                     for metric in per["a"]}
    return out


def _ci(m: dict) -> str:
    return f"{100 * m['mean']:.1f} [{100 * m['ci_low']:.1f}, {100 * m['ci_high']:.1f}]"


def print_report(runs: dict, differences: dict, doodles: list[dict]) -> None:
    print(f"\n{'path':<8} {'model':<12} {'photo@1':>8} {'photo@5':>8} {'concept@1':>10} "
          f"{'concept@5 [95% CI]':>20} {'m@A [95% CI]':>20} {'m@B [95% CI]':>20}")
    for path, run in runs.items():
        for name, r in run["results"].items():
            e = run["early_retrieval"][name]
            print(f"{path:<8} {name:<12} {r['photo_hit'][1]:>8.1%} {r['photo_hit'][5]:>8.1%} "
                  f"{r['concept_hit'][1]:>10.1%} {_ci(r['concept_top5_ci']):>20} {_ci(e['m@A']):>20} "
                  f"{_ci(e['m@B']):>20}")
    for path, run in runs.items():
        for metric, d in run["early_retrieval"].get("difference", {}).items():
            print(f"{path}: SpLIP - frozen {metric}: {format_difference(d)}")
    for name, metrics in differences.items():
        print(f"strokes - canvas, {name}: " + ", ".join(f"{m} {format_difference(d)}" for m, d in metrics.items()))
    first = next(iter(runs.values()))
    print(f"\n{'doodle':<16} {'concept':<12} {'SpLIP top-3 concepts':<40} frozen CLIP top-3 concepts")
    for i, d in enumerate(doodles):
        top = [", ".join(first["results"][name]["top3"][i]) for name in first["results"]]
        print(f"{d['id']:<16} {d['concept']:<12} {top[0]:<40} {top[1]}")


def path_report(run: dict, doodles: list[dict]) -> dict:
    return {"results": {name: {k: r[k] for k in ("photo_hit", "concept_hit", "concept_top5_ci")}
                        for name, r in run["results"].items()},
            "early_retrieval": run["early_retrieval"],
            "per_doodle": [{"id": d["id"], "concept": d["concept"],
                            **{f"{name} top3": run["results"][name]["top3"][i] for name in run["results"]},
                            **{f"{name} ranks per stroke": run["ranks"][name][i] for name in run["ranks"]}}
                           for i, d in enumerate(doodles)]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(REPO / "weights" / "mini"), help="checkpoint directory with gallery/photo/")
    p.add_argument("--mode", choices=["faithful", "fast"], help="inference mode (default: the model's own)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--doodles", default=str(DOODLES))
    p.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "splip" / "doodle"),
                   help="on-disk photo embedding cache ('' for none)")
    p.add_argument("--json", help="write every number here")
    p.add_argument("--save-png", help="save each doodle as each path searches it into DIR/<path>/")
    p.add_argument("--paths", nargs="+", choices=list(PATHS), default=list(PATHS),
                   help="which ways in to measure (default: both, the stroke path first)")
    p.add_argument("--canvas", choices=["model", "crop", "doodle"], default="model",
                   help="how a drawing becomes a query: as the model's sketch_pixels says (the demo), cropped and "
                        "centred, or redrawn as a 28-pixel doodle bitmap (to measure the choice)")
    p.add_argument("--ranking", choices=["model", "cosine"], default="model",
                   help="model: the checkpoint's own ranking (the demo's); cosine: the paper's")
    p.add_argument("--canvas-side", type=int,
                   help="the canvas path's side in pixels, the strokes and the brush scaled to it (default: the "
                        "doodle file's, the demo's 512)")
    p.add_argument("--boot", type=int, default=2000, help="bootstrap replicates for the CIs")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()

    model = SpLIP.from_pretrained(args.model).eval()
    if args.mode:
        model.set_inference_mode(args.mode)
    pixels = {"model": model.config.sketch_pixels, "crop": None, "doodle": 28}[args.canvas]
    spec = load_doodles(args.doodles)
    side = args.canvas_side or spec["canvas"]
    doodles = spec["doodles"]
    models = {"SpLIP": model, "frozen CLIP": model.frozen_baseline().eval()}
    ranking = RankingConfig() if args.ranking == "cosine" else model.config.ranking
    photo_root = Path(args.model) / "gallery" / "photo"
    galleries, rankers = {}, {}
    for name, encoder in models.items():
        rankers[name] = ranker = Ranker.of(encoder, ranking)
        galleries[name] = Gallery.from_folder(
            photo_root, lambda images, enc=encoder: enc.encode_photo(images).numpy(), encoder.fingerprint(),
            encoder.config.inference_mode, cache_dir=args.cache_dir or None, progress=False,
            to_search=lambda vectors, r=ranker: r.vectors(vectors, "photo").numpy())
    runs = {path: run_path(models, galleries, rankers, doodles, queries(path, spec, side, pixels), args.boot)
            for path in args.paths}
    present = set(galleries["SpLIP"].labels)
    concepts = [d["concept"] for d in doodles]
    differences = path_difference(runs["strokes"], runs["canvas"], concepts, len(present), args.boot) \
        if set(runs) == set(PATHS) else {}
    if args.save_png:
        for path, run in runs.items():
            folder = Path(args.save_png) / path
            folder.mkdir(parents=True, exist_ok=True)
            for doodle, sketch in zip(doodles, run["sketches"], strict=True):
                sketch.save(folder / f"{doodle['id']}.png")
    seconds = time.perf_counter() - start

    missing = sorted({d["concept"] for d in doodles if folder_name(d["concept"]) not in present})
    print(f"{len(doodles)} doodles of {len(set(concepts))} concepts; gallery {len(galleries['SpLIP'])} photos of "
          f"{len(present)} concepts; mode {model.config.inference_mode}; {seconds:.1f} s")
    print(f"missing from the gallery ({len(missing)} concepts, counted as misses): {', '.join(missing) or '-'}")
    print_report(runs, differences, doodles)
    if args.json:
        report = {
            "model": args.model, "mode": model.config.inference_mode, "ranking": ranking.method,
            "canvas": args.canvas, "canvas_side": side, "pixels": pixels, "seconds": round(seconds, 2),
            "n_doodles": len(doodles), "n_concepts": len(set(concepts)), "n_photos": len(galleries["SpLIP"]),
            "n_gallery_concepts": len(present), "missing_concepts": missing,
            "paths": {path: path_report(run, doodles) for path, run in runs.items()},
            "strokes_minus_canvas": differences,
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
