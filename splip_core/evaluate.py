"""Evaluate a SpLIP checkpoint against its frozen CLIP baseline: `python -m splip_core.evaluate --help`.

Settings: zs  = unseen-class sketches vs unseen-class photos (mAP@all, mAP@200, P@100, P@200);
          gzs = unseen-class sketches vs the photos of all classes (same metrics, per-class AP seen vs unseen);
          fg  = paired sketches vs their category's photos (Acc@1, Acc@5).
Embeddings are computed in batches and metrics streamed in query blocks, so memory stays bounded at QuickDraw-Ext
scale. Prints a table; `--json` writes every number, `--plot` a per-class AP chart (baseline vs SpLIP).
With the baseline, each metric's gain SpLIP - frozen CLIP comes with a 95% confidence interval from a two-stage
bootstrap over query concepts (classes), then queries within them: drawings of one concept are not independent.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from .config import RankingConfig
from .data import SKETCH_DOMAINS, DatasetError, ImageDataset, Sample, SBIRData, load_dataset
from .metrics import fg_accuracy, format_difference, paired_bootstrap, retrieval_metrics
from .model import SpLIP
from .names import class_key
from .ranking import Ranker
from .runtime import load_model, run_cli, use_all_cores

SETTINGS = ("zs", "gzs", "fg")
RETRIEVAL_PER_QUERY = {"mAP@all": "AP@all", "mAP@200": "AP@200", "P@100": "P@100", "P@200": "P@200",
                       "C@1": "C@1", "C@5": "C@5"}


@torch.inference_mode()
def embed_samples(model: SpLIP, samples: Sequence[Sample], modality: str, batch_size: int = 64,
                  workers: int = 0, desc: str = "", memo: dict | None = None) -> tuple[torch.Tensor, list[Sample]]:
    """(N', D) features of the readable samples, and those samples (unreadable files are dropped, not fatal).

    `memo` (a dict the caller keeps) holds features already computed, keyed by the model's fingerprint, the
    modality and the file, so overlapping evaluations of one model (a build's settings, ablations against one
    reference) encode each file once."""
    known = memo.setdefault((model.fingerprint(), modality), {}) if memo is not None else {}
    todo = [s for s in samples if s.path not in known]
    if todo:
        model.eval()
        loader = DataLoader(ImageDataset(todo, model.transform), batch_size=batch_size, num_workers=workers)
        dtype = model.clip.visual.conv1.weight.dtype
        known.update({s.path: None for s in todo})  # unreadable unless a batch below yields its features
        try:
            for pixels, _, index in tqdm(loader, desc=desc or f"{modality}s", leave=False, dynamic_ncols=True):
                feats = model(pixels.to(model.device, dtype), modality).float().cpu()
                # an unreadable file's slot repeats a readable neighbour's index: each index's first row is its own
                _, first = np.unique(index.numpy(), return_index=True)
                known.update({todo[int(index[i])].path: feats[i] for i in first})
        except DatasetError:  # none of the new files is readable; the memo may still hold readable ones
            pass
    readable = [s for s in samples if known[s.path] is not None]
    if not readable:
        raise DatasetError(f"none of the {len(samples)} {modality} images can be read (first: {samples[0].path})")
    return torch.stack([known[s.path] for s in readable]), readable


def chance_levels(setting: str, queries: Sequence[Sample], gallery: Sequence[Sample], ks=(100, 200)) -> dict:
    """What a random ranking scores on average: the fraction of relevant photos (retrieval), k / number of concepts
    (C@k), or k / category size (FG)."""
    gallery_labels = np.array([g.label for g in gallery])
    counts = {label: int((gallery_labels == label).sum()) for label in np.unique(gallery_labels)}
    if setting == "fg":
        sizes = np.array([counts[q.label] for q in queries])
        return {f"Acc@{k}": float(np.mean(np.minimum(k, sizes) / sizes)) for k in (1, 5)}
    frac = float(np.mean([counts.get(q.label, 0) / len(gallery) for q in queries]))
    present = float(np.mean([q.label in counts for q in queries]))  # a concept with no photo is never found
    concept = {f"C@{k}": present * min(k, len(counts)) / len(counts) for k in (1, 5)}
    return {"mAP@all": frac, "mAP@200": frac, **{f"P@{k}": frac for k in ks}, **concept}


def _scores(setting: str, q: torch.Tensor, qs: list[Sample], g: torch.Tensor, gs: list[Sample]) -> dict:
    q_labels = [s.label for s in qs]
    g_labels = [s.label for s in gs]
    if setting == "fg":  # a sketch whose paired photo was unreadable has nothing to find: drop it
        paired = {(s.label, s.instance) for s in gs}
        keep = [i for i, s in enumerate(qs) if (s.label, s.instance) in paired]
        q, qs, q_labels = q[keep], [qs[i] for i in keep], [q_labels[i] for i in keep]
        result = fg_accuracy(q, [s.instance for s in qs], g, [s.instance for s in gs], q_labels, g_labels)
        return {"metrics": {f"Acc@{k}": result[f"acc@{k}"] for k in (1, 5)}, "per_class": {},
                "per_query": {f"Acc@{k}": result["per_query"][f"hit@{k}"] for k in (1, 5)}, "queries": qs}
    result = retrieval_metrics(q, q_labels, g, g_labels, ks=(100, 200), map_at=(200,))
    metrics = {k: result[k] for k in RETRIEVAL_PER_QUERY}
    per_query = {k: result["per_query"][name] for k, name in RETRIEVAL_PER_QUERY.items()}
    return {"metrics": metrics, "per_class": result["ap_per_class"], "per_query": per_query, "queries": qs}


def differences(splip: dict, baseline: dict, n_boot: int, seed: int) -> dict:
    """{metric: paired_bootstrap of SpLIP minus baseline}, pairing the queries both scored, clustered by class."""
    baseline_index = {s.path: i for i, s in enumerate(baseline["queries"])}
    pairs = [(i, baseline_index[s.path]) for i, s in enumerate(splip["queries"]) if s.path in baseline_index]
    a, b = (np.array(side, dtype=np.int64) for side in zip(*pairs, strict=True))
    concepts = [splip["queries"][i].label for i in a]
    return {metric: paired_bootstrap(values[a], baseline["per_query"][metric][b], concepts, n_boot, seed)
            for metric, values in splip["per_query"].items()}


def split_for(data: SBIRData, setting: str, gzs_queries: str = "unseen") -> tuple[list[Sample], list[Sample]]:
    if setting == "zs":
        return data.zs_split()
    if setting == "gzs":
        return data.gzs_split(gzs_queries)
    if setting == "fg":
        return data.fg_split()
    raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")


def evaluate(model: SpLIP, data: SBIRData, setting: str, baseline: bool = True, batch_size: int = 64,
             workers: int = 0, gzs_queries: str = "unseen", max_queries: int | None = None, seed: int = 0,
             bootstrap: int = 2000, reference: SpLIP | None = None, memo: dict | None = None,
             ranking: RankingConfig | None = None) -> dict:
    """Metrics of SpLIP (and its frozen CLIP baseline) for one setting, as fractions in [0, 1].

    Every model ranks the photos the same way: `ranking`, by default SpLIP's own (`config.ranking`; the paper's
    protocol is RankingConfig(), the cosine), each model reading the names with its own text encoder.

    `reference` replaces the frozen baseline with another model (an ablation against the full SpLIP, say): its
    scores are reported under "baseline" and the difference is SpLIP minus the reference.
    With the baseline and `bootstrap` > 0, report["difference"][metric] is `metrics.paired_bootstrap` of SpLIP minus
    the baseline over `bootstrap` replicates, clustered by query class; `seed` drives it and the query subset.
    `memo` reuses features across calls (`embed_samples`).
    """
    if bootstrap < 0:
        raise ValueError(f"bootstrap must be >= 0 (0 = no confidence intervals), got {bootstrap}")
    queries, gallery = split_for(data, setting, gzs_queries)
    if max_queries is not None and len(queries) > max_queries:
        pick = np.sort(np.random.default_rng(seed).choice(len(queries), max_queries, replace=False))
        queries = [queries[i] for i in pick]
    ranking = ranking or model.config.ranking
    report: dict = {"setting": setting, "mode": model.config.inference_mode, "ranking": ranking.method,
                    "seen": data.seen, "unseen": data.unseen, "per_class_ap": {}}
    models = {"splip": model}
    if reference is not None or baseline:
        models["baseline"] = reference if reference is not None else model.frozen_baseline()
    scored = {}
    for name, m in models.items():
        q, qs = embed_samples(m, queries, "sketch", batch_size, workers, f"{name} sketches", memo)
        g, gs = embed_samples(m, gallery, "photo", batch_size, workers, f"{name} photos", memo)
        ranker = Ranker.of(m, ranking)
        scored[name] = _scores(setting, ranker.vectors(q, "sketch"), qs, ranker.vectors(g, "photo"), gs)
        report[name] = scored[name]["metrics"]
        report["per_class_ap"][name] = {data.classes[label]: ap for label, ap in scored[name]["per_class"].items()}
        report.update(num_queries=len(qs), num_gallery=len(gs))
    report["chance"] = chance_levels(setting, queries, gallery)
    report["num_concepts"] = len({s.label for s in scored["splip"]["queries"]})
    if "baseline" in models and bootstrap:
        report["difference"] = differences(scored["splip"], scored["baseline"], bootstrap, seed)
    return report


def name_accuracy(model: SpLIP, sketches: Sequence[Sample], classes: Sequence[str],
                  vocabulary: Sequence[str] | None = None, baseline: bool = True, memo: dict | None = None,
                  batch_size: int = 64) -> dict:
    """How often each model reads a sketch as its own concept: the top name of the sketch's distribution over the
    names, as the model's names ranking reads it (its vocabulary, or `vocabulary`; its text encoder and seen-name
    offset), for SpLIP and its frozen baseline. `classes` names the samples' labels; a sketch whose concept is not
    in the vocabulary counts as a miss. {"splip": top-1, "baseline": top-1, "num_queries": n}."""
    ranking = dataclasses.replace(model.config.ranking, method="names")
    if vocabulary is not None:
        ranking = dataclasses.replace(ranking, vocabulary=list(vocabulary))
    report: dict = {}
    for name, m in (("splip", model), *((("baseline", model.frozen_baseline()),) if baseline else ())):
        feats, kept = embed_samples(m, sketches, "sketch", batch_size, desc=f"{name} sketches", memo=memo)
        ranker = Ranker.of(m, ranking)
        index = {class_key(n): i for i, n in enumerate(ranker.names)}
        target = torch.tensor([index.get(class_key(classes[s.label]), -1) for s in kept])
        report[name] = float((ranker.distribution(feats, "sketch").argmax(1) == target).float().mean())
        report["num_queries"] = len(kept)
    return report


def format_table(report: dict) -> str:
    """Every metric in % per model; with a bootstrap, SpLIP - frozen CLIP in points and its 95% CI."""
    columns = [c for c in ("baseline", "splip", "chance") if c in report]
    metrics = list(report["splip"])
    diff = report.get("difference", {})
    lines = [f"{report['setting'].upper()}  ({report['num_queries']} queries x {report['num_gallery']} photos, "
             f"{report['num_concepts']} query concepts, {report['mode']} mode, {report['ranking']} ranking)",
             "metric    " + "".join(f"{c:>10}" for c in columns) + ("   splip - baseline [95% CI]" if diff else "")]
    for metric in metrics:
        line = f"{metric:<10}" + "".join(f"{100 * report[c][metric]:>10.2f}" for c in columns)
        if metric in diff:
            d = diff[metric]
            line += f"   {format_difference(d, digits=2)}"
        lines.append(line)
    if diff:
        first = next(iter(diff.values()))
        lines.append(f"CI: {first['n_boot']} bootstrap draws of the {first['n_clusters']} concepts, then of the "
                     "queries within each")
    return "\n".join(lines)


def plot_per_class(report: dict, path: str | Path) -> None:
    """Bar chart of per-class AP, baseline vs SpLIP, unseen classes marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_class = report["per_class_ap"]
    names = sorted(per_class.get("splip", {}), key=lambda n: -per_class["splip"][n])
    if not names:
        return
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(names)), 4))
    if "baseline" in per_class:
        ax.bar(x - 0.2, [per_class["baseline"][n] for n in names], 0.4, label="frozen CLIP", color="#999999")
    ax.bar(x + 0.2, [per_class["splip"][n] for n in names], 0.4, label="SpLIP", color="#1f77b4")
    unseen = set(report.get("unseen", []))
    ax.set_xticks(x, [f"{n}{' *' if n in unseen else ''}" for n in names], rotation=75, fontsize=7)
    ax.set_ylabel("AP@all")
    ax.set_title(f"{report['setting'].upper()}: per-class AP (* = unseen class)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m splip_core.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint directory or Hub repo id")
    p.add_argument("--data", help="dataset root (default for --dataset mini: the model's gallery folder)")
    p.add_argument("--dataset", required=True, choices=["sketchy", "tuberlin", "quickdraw", "folder", "mini"])
    p.add_argument("--split", help="zero-shot split name or class-list file")
    p.add_argument("--setting", choices=SETTINGS, default="zs")
    p.add_argument("--mode", choices=["faithful", "fast"], help="override the checkpoint's inference mode")
    p.add_argument("--ranking", choices=["model", "cosine"], default="model",
                   help="model: the checkpoint's own ranking (config.ranking); cosine: the paper's protocol")
    p.add_argument("--gzs-queries", choices=["unseen", "seen", "all"], default="unseen")
    p.add_argument("--sketches", choices=["all", *SKETCH_DOMAINS], default="all",
                   help="query with one sketch domain only: doodles (qd_* files) or icons (the rest)")
    p.add_argument("--max-queries", type=int, help="evaluate a seeded random subset of the queries")
    p.add_argument("--no-baseline", action="store_true", help="skip the frozen CLIP baseline")
    p.add_argument("--bootstrap", type=int, default=2000, metavar="N",
                   help="bootstrap draws for the 95%% CI of SpLIP - baseline, clustered by concept (0 = off)")
    p.add_argument("--seed", type=int, default=0, help="seed of the --max-queries subset and of the bootstrap")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", help="write the full report here")
    p.add_argument("--plot", help="write a per-class AP chart (PNG) here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    use_all_cores()
    model = load_model(args.model, args.device, args.mode)
    dataset, root = args.dataset, args.data
    if dataset == "mini":
        dataset, root = "folder", root or str(Path(args.model) / "gallery")
    if root is None:
        raise ValueError("--data is required for this dataset")
    data = load_dataset(dataset, root, args.split).sketch_domain(args.sketches)
    report = evaluate(model, data, args.setting, baseline=not args.no_baseline, batch_size=args.batch_size,
                      workers=args.workers, gzs_queries=args.gzs_queries, max_queries=args.max_queries,
                      seed=args.seed, bootstrap=args.bootstrap,
                      ranking=RankingConfig() if args.ranking == "cosine" else None)
    report.update(model=args.model, dataset=args.dataset)
    print(format_table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    if args.plot:
        plot_per_class(report, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
