"""What the demo does, as plain functions over a `DemoState`: a drawing (strokes from the page's canvas, or an
uploaded image) becomes ranked photos for SpLIP and the frozen CLIP baseline (captions, seen/unseen badges,
category guess, precision, the rank after each stroke), uploads become galleries, and the shipped evaluation becomes
the About tab. No Gradio here, so all of it is tested without a server or browser.
"""

from __future__ import annotations

import itertools
import shutil
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

from splip_core import (
    EmptyGalleryError,
    Hit,
    InvalidImageError,
    InvalidStrokesError,
    class_key,
    display_name,
    drawn_sketch,
    format_difference,
    load_image,
    stroke_sketch,
)

from .state import SETTINGS, DemoState, Example, Progress, SearchSpace, build_space
from .uploads import UploadError, prepare_upload

if TYPE_CHECKING:
    from matplotlib.figure import Figure

HINT = "✏ Draw something on the canvas (or click an example sketch below) and the closest photos appear here."
STROKES, UPLOAD = "strokes", "upload"  # the two ways in: the drawing canvas, and an uploaded image
MAX_K = 50
CLIP_LOGIT_SCALE = 100.0  # CLIP's trained temperature, turns cosine scores into class probabilities
CANVAS_SIZE = 512


class BadQuery(ValueError):
    """A query that cannot be searched; the message is written for the visitor."""


# ----------------------------------------------------------------------------------------------------------------
# the canvas
def _rgba(image) -> Image.Image:
    return image.convert("RGBA") if isinstance(image, Image.Image) else Image.open(image).convert("RGBA")


def canvas_image(value, pixels: int | None = None) -> Image.Image | None:
    """The drawing as an RGB image on white, cropped to its strokes (or, with `pixels`, redrawn as a doodle bitmap
    that size, as the model's `sketch_pixels` asks), or None for an empty or blank canvas.

    `value` is an image editor's dict as the API takes it (its `composite`, else `background` under `layers`) or an
    image / path. Raises InvalidImageError for something that is not a usable image.
    """
    if value is None:
        return None
    if isinstance(value, dict):
        image = value.get("composite")
        if image is None:
            parts = [p for p in [value.get("background"), *(value.get("layers") or [])] if p is not None]
            if not parts:
                return None
            image = Image.new("RGBA", _rgba(parts[0]).size, "white")
            for part in parts:
                image.alpha_composite(_rgba(part).resize(image.size))
    else:
        image = value
    image = load_image(image)
    return drawn_sketch(image, pixels=pixels)


def example_canvas(example: Example, size: int = CANVAS_SIZE) -> Image.Image:
    """An example sketch as an uploaded sketch: scaled to fit a white `size` square."""
    sketch = ImageOps.contain(load_image(example.path), (size, size))
    canvas = Image.new("RGB", (size, size), "white")
    canvas.paste(sketch, ((size - sketch.width) // 2, (size - sketch.height) // 2))
    return canvas


def is_drawing(sketch) -> bool:
    """Whether a query is a drawing as strokes (a list of them, or a Quick, Draw! record) rather than an image."""
    return isinstance(sketch, (list, tuple)) or (isinstance(sketch, dict) and "drawing" in sketch)


def stroke_count(sketch) -> int | None:
    """How many strokes a drawing has (None for an image): where the stroke-by-stroke trace is."""
    if not is_drawing(sketch):
        return None
    strokes = sketch["drawing"] if isinstance(sketch, dict) else sketch
    return len(strokes) if isinstance(strokes, (list, tuple)) else None


def query_image(state: DemoState, sketch) -> Image.Image | None:
    """What any query is searched as, for the page and the API alike: strokes through `stroke_sketch`, an image or
    an editor value through `canvas_image`, as the model's `sketch_pixels` asks; None for a blank one. Raises
    BadQuery saying what is wrong (the limit a drawing broke; never the server's path for a file)."""
    pixels = state.model.config.sketch_pixels
    try:
        return stroke_sketch(sketch, pixels) if is_drawing(sketch) else canvas_image(sketch, pixels)
    except InvalidStrokesError as err:
        raise BadQuery(f"the drawing cannot be searched: {err}") from err
    except InvalidImageError as err:
        raise BadQuery(f"the sketch is not a usable image: {err.reason}") from err


# ----------------------------------------------------------------------------------------------------------------
# search
@dataclass
class Outcome:
    """One search: both rankings, the category guess (all categories, best first) and the view's note."""

    splip: list[Hit]
    baseline: list[Hit]
    guess: list[tuple[str, float]]
    note: str
    ranks: dict[str, int] | None = None  # where the named category stands: {"SpLIP": 3, "CLIP": 12, "categories": N}


def guess_categories(space: SearchSpace, vector: np.ndarray) -> list[tuple[str, float]]:
    """Zero-shot classification of the sketch over every category name: (name, probability), best first."""
    logits = CLIP_LOGIT_SCALE * (space.text_vectors @ vector)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    return [(space.categories[i], float(probs[i])) for i in np.argsort(-probs, kind="stable")]


def fg_label(space: SearchSpace, category: str | None, guess: list[tuple[str, float]]) -> str | None:
    """The gallery label FG ranks within: `category` when the gallery has it, else the best guess it has."""
    for name in ([category] if category else []) + [name for name, _ in guess]:
        label = space.label_for(name)
        if label is not None:
            return label
    return None


def search(state: DemoState, space: SearchSpace, image: Image.Image, setting: str, k: int,
           category: str | None = None, baseline: bool = True) -> Outcome:
    """Encode the sketch with SpLIP (and, with `baseline`, the frozen CLIP) and rank the setting's view of the gallery:
    what the page shows and what the API returns both come from here. The sketch is preprocessed once for both
    models (they share CLIP's transform); without `baseline` nothing is computed for the baseline column."""
    if setting not in SETTINGS:
        raise BadQuery(f"setting must be one of {', '.join(SETTINGS)}, not {setting!r}")
    pixels = state.model.preprocess(image)
    features = state.model.encode_sketch(pixels)
    return rank(state, space, features, state.baseline.encode_sketch(pixels) if baseline else None, setting, k,
                category)


def rank(state: DemoState, space: SearchSpace, features, baseline_features, setting: str, k: int,
         category: str | None = None) -> Outcome:
    """The setting's view of the gallery ranked for a sketch's SpLIP features (and the baseline's, when given; else
    the outcome's baseline list is empty). The category guess reuses the SpLIP features. FG ranks the photos of
    `category` (when the gallery has it), else of the best guessed category it has. `setting` is one of SETTINGS
    (`search` checks it before encoding anything)."""
    k = max(1, min(int(k), MAX_K))
    baseline = baseline_features is not None
    query = state.rankers[0].vectors(features, "sketch").numpy()[0]
    query_base = state.rankers[1].vectors(baseline_features, "sketch").numpy()[0] if baseline else None
    guess = guess_categories(space, features.numpy()[0]) if baseline or setting == "FG" else []
    splip, base, note = space.view(setting, fg_label(space, category, guess) if setting == "FG" else None)
    label = space.label_for(category) if category and baseline and setting != "FG" else None
    concept = splip.concept_rank(query, label) if label is not None else None
    ranks = None if concept is None else {"SpLIP": concept, "CLIP": base.concept_rank(query_base, label),
                                          "categories": len(splip.labels)}
    return Outcome(splip.search(query, k), base.search(query_base, k) if baseline else [], guess, note, ranks)


def api_rows(space: SearchSpace, hits: list[Hit]) -> list[dict]:
    """Ranked photos as the API answers them: {rank, photo (its path in the gallery), category, score, seen}."""
    return [{"rank": rank, "photo": space.relative(hit.path), "category": None if hit.label is None
             else display_name(hit.label), "score": round(hit.score, 4),
             "seen": None if hit.label is None else space.status(hit.label) == "seen"}
            for rank, hit in enumerate(hits, 1)]


def api_search(state: DemoState, sketch, setting: str = "GZS", k: int | None = None) -> list[dict]:
    """The `/search` endpoint: the ranked photos of the app's gallery as plain data (`api_rows`); [] for a blank
    sketch.

    `sketch` is a drawing as strokes (what the page sends; a downloaded Quick, Draw! ndjson record too) or an
    image. Only what the answer holds is computed: the SpLIP query and its top-k (no baseline column, no guess
    but FG's). A k outside 1..MAX_K is refused (BadQuery naming the range), and so is a malformed drawing (naming
    the problem) or an unusable image (saying what is wrong with it, never the server's path for it).
    """
    if k is not None and not (isinstance(k, int) and 1 <= k <= MAX_K):
        raise BadQuery(f"k must be a whole number from 1 to {MAX_K}, got {k!r}")
    image = query_image(state, sketch)
    if image is None:
        return []
    if state.space is None:
        raise BadQuery(state.gallery_note)
    outcome = search(state, state.space, image, setting, state.top_k if k is None else k, baseline=False)
    return api_rows(state.space, outcome.splip)


class LatestOnly:
    """Per visitor session, only the newest search may show its result: an older search that finishes after a
    newer one has started is dropped, so a slow stroke's result never overwrites the next stroke's."""

    def __init__(self, capacity: int = 10_000):
        self._tickets = itertools.count(1)
        self._latest: OrderedDict[str, int] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def start(self, session: str) -> int:
        with self._lock:
            ticket = next(self._tickets)
            self._latest[session] = ticket
            self._latest.move_to_end(session)
            while len(self._latest) > self._capacity:
                self._latest.popitem(last=False)
            return ticket

    def is_latest(self, session: str, ticket: int) -> bool:
        with self._lock:
            return self._latest.get(session, ticket) == ticket


# ----------------------------------------------------------------------------------------------------------------
# what the Search tab shows
@dataclass
class Visit:
    """What the page remembers for one visitor, in one `gr.State`: the precision of their labelled queries, the
    named category's rank after each stroke, the example they picked (its FG photo is starred), which way in they
    used last, and their uploaded gallery's key (dropped with the State when it expires or the tab closes)."""

    history: dict = field(default_factory=dict)
    trace: dict | None = None  # {"category": key, "ranks": [{"strokes": n, "SpLIP": r, "CLIP": r, ...}, ...]}
    instance: str | None = None
    source: str = STROKES
    gallery: str | None = None


@dataclass
class SearchView:
    """Values for the Search tab's outputs, and the visit after this search. `cleared`: a drawing was wiped after a
    search (forget the category named for it)."""

    results: list[tuple[str, str]]
    baseline: list[tuple[str, str]]
    guess: dict[str, float] | None
    message: str
    summary: str
    early: str
    visit: Visit
    cleared: bool = False


def early_markdown(trace: dict | None) -> str:
    """The named category's rank after each stroke, SpLIP against CLIP: how early the drawing is found."""
    if not trace or not trace["ranks"]:
        return ""
    ranks = trace["ranks"]

    def strip(model: str) -> str:
        return " → ".join(f"**{r[model]}**" if r[model] <= 5 else str(r[model]) for r in ranks)

    found = next((i for i in range(len(ranks)) if all(r["SpLIP"] <= 5 for r in ranks[i:])), None)
    tail = (f"In SpLIP's top 5 since stroke {ranks[found]['strokes'] or found + 1}." if found is not None
            else "Not in SpLIP's top 5 yet.")
    return (f"**{display_name(trace['category'])}** after each stroke, rank among {ranks[-1]['categories']} "
            f"categories: SpLIP {strip('SpLIP')} · CLIP {strip('CLIP')}. {tail}")


def next_trace(trace: dict | None, category: str, ranks: dict[str, int], strokes: int | None) -> dict:
    """The trace after one more search of a drawing of `strokes` strokes: its point replaces any at that stroke or
    later (a new stroke adds one, an undo goes back, the same drawing searched again replaces its own); an image
    (`strokes` None) replaces the last point. A new category starts a new trace."""
    if not trace or trace["category"] != class_key(category):
        trace = {"category": class_key(category), "ranks": []}
    if strokes is None:
        kept = trace["ranks"][:-1]
    else:
        kept = [r for r in trace["ranks"] if r["strokes"] is not None and r["strokes"] < strokes]
    return {"category": trace["category"], "ranks": [*kept, {**ranks, "strokes": strokes}]}


def caption(space: SearchSpace, hit: Hit, instance: str | None = None) -> str:
    """"category · score · seen|unseen", with ★ on the photo the sketch was drawn from (FG pair)."""
    star = "★ " if instance is not None and Path(hit.path).stem == instance else ""
    if hit.label is None:
        return f"{star}{Path(hit.path).name} · {hit.score:.3f}"
    return f"{star}{display_name(hit.label)} · {hit.score:.3f} · {space.status(hit.label)}"


def precision(hits: list[Hit], category: str) -> float:
    """Fraction of the hits whose label is `category`."""
    return sum(h.label is not None and class_key(h.label) == class_key(category) for h in hits) / max(len(hits), 1)


def summary_markdown(history: dict) -> str:
    """Mean precision of the visitor's labelled queries so far, seen vs unseen categories, SpLIP vs baseline."""
    if not history:
        return ("*Pick an example, or say what you are drawing, to see precision for seen vs unseen "
                "categories here.*")
    rows = ["| your labelled queries | n | SpLIP P@k | CLIP P@k |", "|---|---|---|---|"]
    for status in ("seen", "unseen"):
        group = [r for r in history.values() if r["status"] == status]
        if group:
            rows.append(f"| {status} categories | {len(group)} | {np.mean([r['splip'] for r in group]):.2f} | "
                        f"{np.mean([r['baseline'] for r in group]):.2f} |")
    return "\n".join(rows)


def _no_results(visit: Visit, message: str, cleared: bool = False) -> SearchView:
    return SearchView([], [], None, message, summary_markdown(visit.history), early_markdown(visit.trace), visit,
                      cleared)


def search_view(state: DemoState, sketch, setting: str, k: int, category: str | None = None,
                visit: Visit | None = None, space_key: str | None = None, edited: bool = False) -> SearchView:
    """Everything the Search tab shows for one query, a drawing's strokes or an image (`search` behind it, as behind
    the API). A blank one gives the hint and searches nothing; after an `edited` drawing (a stroke undone, the
    canvas cleared) that had been searched or picked as an example, it is `cleared`: the trace and the example go.
    A blank one with nothing before it (an editor's event at page load) clears nothing: a category named meanwhile
    stays. A drawing's stroke count places its point on the trace (`next_trace`)."""
    visit = visit or Visit()
    space, gone = state.space_for(space_key)
    try:
        image = query_image(state, sketch)
    except BadQuery as err:
        return _no_results(visit, f"⚠ {str(err)[:1].upper()}{str(err)[1:]}")
    if image is None:
        cleared = edited and (visit.trace is not None or visit.instance is not None)
        return _no_results(replace(visit, trace=None, instance=None) if cleared else visit, HINT, cleared)
    if space is None:
        return _no_results(visit, f"⚠ {gone or state.gallery_note}")
    outcome = search(state, space, image, setting, k, category)
    trace = next_trace(visit.trace, category, outcome.ranks, stroke_count(sketch)) \
        if category and outcome.ranks else None
    history = dict(visit.history)
    lines = [outcome.note] if outcome.note else []
    if category:
        status = space.status(category)
        p_splip, p_base = precision(outcome.splip, category), precision(outcome.baseline, category)
        lines.append(f"Query category **{display_name(category)}** ({status}): precision@{len(outcome.splip)} "
                     f"SpLIP **{p_splip:.2f}** · CLIP baseline **{p_base:.2f}**")
        if space.label_for(category) is None:
            lines.append(f"(this gallery has no photos of {display_name(category)})")
        history[f"{class_key(category)}|{setting}"] = {"status": status, "splip": p_splip, "baseline": p_base}
    return SearchView(
        [(h.path, caption(space, h, visit.instance)) for h in outcome.splip],
        [(h.path, caption(space, h, visit.instance)) for h in outcome.baseline],
        {name: p for name, p in outcome.guess[:3]},
        "  \n".join(lines) or "Say what you are drawing (above) to see precision.",
        summary_markdown(history), early_markdown(trace), replace(visit, history=history, trace=trace))


# ----------------------------------------------------------------------------------------------------------------
# bring your own gallery
def index_upload(state: DemoState, files, progress: Progress | None = None,
                 session: str = "") -> tuple[str | None, str]:
    """Unpack, embed (cached) and hold an upload as this browser session's gallery: (its key or None, a report).

    The session's previous upload is replaced; its embedding cache folder is kept, so the same photos again are
    instant while the gallery lives.
    """
    try:
        prepared = prepare_upload(files, state.upload_dir, state.limits)
    except UploadError as err:
        return None, f"⚠ **Upload refused:** {err}."
    key = state.user_spaces.key_for(session)
    cache = state.gallery_cache(None, key)
    try:
        space = build_space("your upload", prepared.root, state.model, state.baseline, state.split, cache, progress,
                            seeds=state.seeds, rankers=state.rankers)
    except EmptyGalleryError as err:
        shutil.rmtree(prepared.folder, ignore_errors=True)
        return None, f"⚠ {err}"
    state.user_spaces.add(key, space, [prepared.folder, cache])
    skipped = prepared.skipped + space.splip.skipped
    report = [f"✔ Indexed **{space.describe()}**. Searches in this browser tab now use it: "
              f"{state.user_spaces.describe_limits()}."]
    if skipped:
        report.append(f"Skipped {len(skipped)} file{'s' * (len(skipped) != 1)}:")
        report += [f"- {reason}" for _, reason in skipped[:10]]
        if len(skipped) > 10:
            report.append(f"- … and {len(skipped) - 10} more")
    return key, "\n".join(report)


# ----------------------------------------------------------------------------------------------------------------
# the About tab
SETTING_TITLES = {"zs": "ZS: unseen categories only",
                  "seen": "Seen categories, test sketches never used in training",
                  "gzs": "GZS: unseen-category sketches, the whole gallery",
                  "gzs_seen": "GZS: seen-category test sketches, the whole gallery",
                  "icons_zs": "Designer line icons (test icon families), ZS: unseen categories",
                  "icons_seen": "Designer line icons (test icon families), seen categories",
                  "fg": "FG: the photo a sketch was drawn from"}
METHOD_NAMES = {"baseline": "frozen CLIP", "splip": "SpLIP", "chance": "chance"}


def _fmt(value) -> str:
    return f"{100 * value:.1f}" if isinstance(value, float) else str(value)


def evaluation_markdown(evaluation: dict | None, note: str = "") -> str:
    """The shipped evaluation as one table per setting (rows: baseline, SpLIP, their difference with its
    concept-clustered bootstrap 95% CI, chance; values in %)."""
    if not evaluation or not evaluation.get("settings"):
        return note or "No evaluation shipped with this model."
    out = [f"*{evaluation['queries']}* C@k: the drawn category is among the first k categories of the result "
           "page.", ""] if evaluation.get("queries") else []
    for key, setting in evaluation["settings"].items():
        results = {method: scores for method, scores in setting.items()
                   if method in METHOD_NAMES and isinstance(scores, dict)}
        metrics = list(dict.fromkeys(m for scores in results.values() for m in scores))
        size = (f" — {setting['num_queries']} sketches × {setting['num_gallery']} photos"
                if "num_queries" in setting and "num_gallery" in setting else "")
        out += [f"**{SETTING_TITLES.get(key, key)}**{size} (%)", "", "| | " + " | ".join(metrics) + " |",
                "|---" * (len(metrics) + 1) + "|"]
        for method, scores in results.items():
            cells = " | ".join(_fmt(scores.get(m, "–")) for m in metrics)
            out.append(f"| {METHOD_NAMES.get(method, method)} | {cells} |")
        diff = setting.get("difference") or {}
        if diff:
            cells = " | ".join(format_difference(diff.get(m)) for m in metrics)
            out.append(f"| SpLIP − frozen [95% CI] | {cells} |")
        out.append("")
    return "\n".join(out)


def has_ap_chart(evaluation: dict | None) -> bool:
    """Whether the evaluation holds per-category AP for both models (what `ap_figure` draws)."""
    per_class = (evaluation or {}).get("per_class_ap") or {}
    return any(c in (per_class.get("baseline") or {}) for c in per_class.get("splip") or {})


def ap_figure(evaluation: dict | None) -> Figure | None:
    """Per-category AP, SpLIP against the frozen CLIP baseline (a dot above the diagonal is a category SpLIP
    improves), coloured seen/unseen, beside the mean AP of each group. Imports matplotlib only when called (half
    a second of the app's start)."""
    if not has_ap_chart(evaluation):
        return None
    from matplotlib.figure import Figure

    per_class = evaluation["per_class_ap"]
    base, splip = per_class["baseline"], per_class["splip"]
    classes = [c for c in splip if c in base]
    unseen = {class_key(c) for c in evaluation.get("unseen", [])}
    groups = {"seen": [c for c in classes if class_key(c) not in unseen],
              "unseen": [c for c in classes if class_key(c) in unseen]}
    colours = {"seen": "#1f77b4", "unseen": "#ff7f0e"}
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    scatter, bars = fig.subplots(1, 2, width_ratios=[1.4, 1])
    for group, names in groups.items():
        if names:
            scatter.scatter([base[c] for c in names], [splip[c] for c in names], s=18, alpha=0.75,
                            color=colours[group], label=f"{group} ({len(names)})")
    scatter.plot([0, 1], [0, 1], color="grey", lw=1, ls="--")
    scatter.set(xlim=(0, 1), ylim=(0, 1), xlabel="frozen CLIP AP", ylabel="SpLIP AP",
                title="AP per category (above the line: SpLIP better)")
    scatter.legend(loc="lower right")
    present = [g for g in groups if groups[g]]
    x = np.arange(len(present))
    for offset, (method, values, hatch) in zip((-0.2, 0.2), (("frozen CLIP", base, "//"), ("SpLIP", splip, "")),
                                               strict=True):
        means = [np.mean([values[c] for c in groups[g]]) for g in present]
        bars.bar(x + offset, means, 0.4, color=[colours[g] for g in present], hatch=hatch, edgecolor="black",
                 label=method)
        for xi, m in zip(x + offset, means, strict=True):
            bars.text(xi, m + 0.01, f"{m:.2f}", ha="center", fontsize=9)
    bars.set(xticks=x, xticklabels=[f"{g} categories" for g in present], ylim=(0, 1), ylabel="mean AP",
             title="Mean AP, seen vs unseen")
    bars.legend(loc="upper right")
    return fig


def ranking_line(ranking) -> str:
    """How photos are ranked, in a visitor's words."""
    if ranking.method == "cosine":
        return "Photos are ranked by the cosine of the sketch's and the photo's features (the paper's ranking)."
    return (f"Photos are ranked by the cosine of the features plus {ranking.weight:g} × how well the sketch and the "
            f"photo agree on what they show, each read over {len(ranking.vocabulary)} category names (temperature "
            f"{ranking.temperature:g}; names the model has seen drawn are lowered by {ranking.seen_offset:g} for a "
            "sketch, so unseen categories stay in reach). Chosen on the validation categories.")


def about_markdown(state: DemoState) -> str:
    """What the model is, where seen/unseen comes from, and how to call the API."""
    c = state.model.config
    lines = [f"### {state.model_name}", "",
             f"- Backbone `{c.backbone.name}` (frozen), prompts learnt on **{len(c.seen_classes)} seen categories**; "
             "every other category is *unseen* (never used to train the prompts).",
             f"- Inference mode `{c.inference_mode}`; weights fingerprint `{state.model.fingerprint()}` (the key of "
             "the on-disk embedding cache).",
             f"- {ranking_line(c.ranking)}",
             "- The right-hand column ranks the same gallery with the same CLIP, prompts off, the same way: the "
             "frozen baseline.",
             *(f"- ⚠ {n}" for n in state.notices), "",
             "**API** (what the *Search* button does, as data): a drawing as Quick, Draw! strokes (the canvas's "
             "*Download drawing: ndjson* as it is), or an image:", "",
             "```python\nimport json\nfrom gradio_client import Client, handle_file\nclient = Client(URL)\n"
             "drawing = json.loads(open(\"drawing.ndjson\").readline())  # or [[xs, ys], ...]\n"
             "hits = client.predict(drawing, \"GZS\", 10, api_name=\"/search\")\n"
             "sketch = {\"background\": None, \"layers\": [], \"composite\": handle_file(\"sketch.png\")}\n"
             "hits = client.predict(sketch, \"GZS\", 10, api_name=\"/search\")\n"
             "# [{'rank': 1, 'photo': 'cat/x.jpg', 'category': 'cat', 'score': 0.41, 'seen': True}, ...]\n```"]
    return "\n".join(lines)
