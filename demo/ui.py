"""The Gradio Blocks layout and its event wiring; what each event does lives in `handlers`."""

from __future__ import annotations

import functools
import os
from typing import Literal

import gradio as gr
from gradio.components.image_editor import EditorData
from PIL import Image

from splip_core import display_name

from . import handlers
from .handlers import HINT, MAX_K, BadQuery, LatestOnly
from .state import DemoState

THEME = gr.themes.Default(font=["sans-serif"], font_mono=["monospace"])  # system fonts: no Google Fonts request
CSS = "#results .caption-label, #baseline .caption-label { white-space: normal; font-size: 12px; line-height: 1.25; }"
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
SEARCH_CONCURRENCY = CORES  # searches running at once, shared by the UI and the API ...
TORCH_THREADS = 1  # ... each on one torch thread: threads x concurrent searches <= cores, no oversubscription
QUEUE_SIZE = 512  # waiting events before new visitors are told the queue is full
# Gradio rebuilds its monitoring summary (a pandas frame of up to 10,000 past events) after every event by default:
# measured 1.2-1.6 ms per search with 100-1,000 events recorded and 4.4 ms once 10,000 are. Every 100th event is
# often enough for a summary; queues made after this module is imported (the app's, the load test's floor) use it.
ANALYTICS_EVERY = 100
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", str(ANALYTICS_EVERY))
SETTING_CHOICES = [("ZS: unseen categories only", "ZS"), ("GZS: all categories", "GZS"),
                ("FG: photos of one category, instance by instance", "FG")]
BLANK = {"background": Image.new("RGB", (512, 512), "white"), "layers": [], "composite": None}
BRUSH = gr.Brush(colors=["#000000"], color_mode="fixed", default_size=6)


def _file_paths(value):
    """A Sketchpad value as `gr.api` hands it over (file dicts, already checked by Gradio to be uploads) with each
    file reduced to its local path, as `handlers.canvas_image` reads it."""
    def path(item):
        return item.get("path") if isinstance(item, dict) else item

    if not isinstance(value, dict):
        return path(value)
    return {"background": path(value.get("background")), "layers": [path(x) for x in value.get("layers") or []],
            "composite": path(value.get("composite"))}


def build_app(state: DemoState) -> gr.Blocks:
    """The demo's Blocks (queue configured); launch it with `demo.server.serve`."""
    latest = LatestOnly()
    with gr.Blocks(title="SpLIP sketch search", analytics_enabled=False) as app:
        gr.Markdown("# SpLIP: draw a sketch, find the photo\nPrompts learnt on a frozen CLIP, compared with the "
                    "frozen CLIP itself, on categories the prompts saw in training (*seen*) and never saw (*unseen*).")
        info = gr.Markdown(state.info_line(state.space), elem_id="info-line")
        if state.notices:
            gr.Markdown("\n".join(f"⚠ {n}  " for n in state.notices), elem_id="notices")
        galleries = state.user_spaces  # a visitor's upload lives as long as this State: TTL, freed on expiry/close
        space_key = gr.State(None, time_to_live=galleries.ttl_s, delete_callback=galleries.drop)
        instance, history, trace = gr.State(None), gr.State({}), gr.State(None)  # trace: ranks after each stroke

        with gr.Tabs():
            with gr.Tab("Search", id="search"):
                with gr.Row():
                    with gr.Column(scale=2, min_width=340):
                        sketch = gr.Sketchpad(BLANK, type="pil", image_mode="RGBA", canvas_size=(512, 512), brush=BRUSH,
                                              layers=False, height=600, label="Your sketch", elem_id="sketchpad")
                        gr.Markdown("Black brush: set its width under the brush tool (left); undo, redo and clear "
                                    "are at the top right.", elem_classes="tool-hint")
                        search_button = gr.Button("Search", variant="primary", elem_id="search-button")
                        setting = gr.Radio(SETTING_CHOICES, value="GZS", label="Gallery", elem_id="setting")
                        top_k = gr.Slider(1, MAX_K, value=state.top_k, step=1, label="top-k", elem_id="top-k")
                        category = gr.Dropdown(state.space.categories if state.space else [], value=None,
                                               allow_custom_value=True, elem_id="category",
                                               label="What are you drawing? (optional: shows precision)")
                        message = gr.Markdown(HINT, elem_id="message")
                        early = gr.Markdown("", elem_id="early-retrieval")
                        guess = gr.Label(num_top_classes=3, label="The model's guess (zero-shot over all "
                                         "category names)", elem_id="guess")
                    with gr.Column(scale=3):
                        with gr.Row():
                            results = gr.Gallery(label="SpLIP", columns=2, allow_preview=False, height="auto",
                                                 object_fit="contain", elem_id="results")
                            baseline = gr.Gallery(label="Frozen CLIP baseline", columns=2, allow_preview=False,
                                                  height="auto", object_fit="contain", elem_id="baseline")
                        summary = gr.Markdown(handlers.summary_markdown({}), elem_id="summary")
                if state.examples:
                    examples = gr.Gallery([(str(e.path), e.caption) for e in state.examples], columns=8,
                                          fit_columns=False, allow_preview=False, height=230, elem_id="examples",
                                          object_fit="contain",  # a whole doodle, not its middle
                                          label="Example sketches from the offline world's test split: click one")

            with gr.Tab("Your gallery", id="upload"):
                gr.Markdown("Search your own photos: upload images or a .zip. Photos in class folders "
                            "(`cat/1.jpg`) are labelled by folder; loose photos are fine. Your gallery is yours "
                            f"alone: {galleries.describe_limits()}. While it lives, uploading the same photos "
                            "again is instant.")
                files = gr.File(file_count="multiple", file_types=["image", ".zip"], elem_id="upload-files",
                                label=f"Photos or .zip ({state.limits.describe()})")
                with gr.Row():
                    index_button = gr.Button("Index these photos", variant="primary")
                    reset_button = gr.Button("Back to the app's gallery")
                index_report = gr.Markdown()

            with gr.Tab("About this model", id="about"):
                gr.Markdown(handlers.about_markdown(state))
                gr.Markdown(handlers.evaluation_markdown(state.evaluation, state.evaluation_note))
                chart = None
                if handlers.has_ap_chart(state.evaluation):  # drawn at the first page load, not at startup
                    chart = gr.Plot(label="Average precision per category", elem_id="ap-chart")

        search_inputs = [sketch, setting, top_k, category, instance, history, space_key, trace]
        search_outputs = [results, baseline, guess, message, history, summary, category, instance, space_key, trace,
                          early]

        def run(values, request: gr.Request, from_canvas: bool):
            session = request.session_hash or ""
            ticket = latest.start(session)
            key = galleries.key_for(session)  # by session, not the State: a State Gradio evicted cannot hide it
            *fields, held_key, trace_value = values
            view = handlers.search_view(state, *fields, key, trace_value, stroke=from_canvas)
            if not latest.is_latest(session, ticket):  # a newer search of this visitor has started: drop this one
                return [gr.skip()] * len(search_outputs)
            forget = None if view.cleared else gr.skip()  # a cleared canvas starts a new query
            held = held_key or gr.skip()  # set again: the State's time to live restarts
            return (view.results, view.baseline, view.guess, view.message, view.history, view.summary, forget, forget,
                    held, view.trace, view.early)

        def on_search(sketch_value, setting_value, k, category_value, instance_value, history_value, key, trace_value,
                      request: gr.Request):
            values = (sketch_value, setting_value, k, category_value, instance_value, history_value, key, trace_value)
            return run(values, request, from_canvas=False)

        def on_stroke(sketch_value, setting_value, k, category_value, instance_value, history_value, key, trace_value,
                      request: gr.Request):
            values = (sketch_value, setting_value, k, category_value, instance_value, history_value, key, trace_value)
            return run(values, request, from_canvas=True)

        live = {"trigger_mode": "always_last", "concurrency_id": "search", "concurrency_limit": SEARCH_CONCURRENCY,
                "api_visibility": "private", "show_progress": "minimal"}
        sketch.input(on_stroke, search_inputs, search_outputs, **live)
        gr.on([search_button.click, setting.input, top_k.release, category.input], on_search, search_inputs,
              search_outputs, **live)
        if state.examples:
            def pick_example(evt: gr.SelectData):
                example = state.examples[evt.index]
                return handlers.example_canvas(example), display_name(example.label), example.instance

            examples.select(pick_example, None, [sketch, category, instance], api_visibility="private").then(
                on_search, search_inputs, search_outputs, **live)

        def search(sketch: EditorData, setting: Literal["ZS", "GZS", "FG"] = "GZS", k: int = 10) -> list[dict]:
            """Rank the app's gallery for a sketch (a Sketchpad value: its `composite` image, else `background`
            under `layers`): a list of {rank, photo, category, score, seen}, best first; [] for a blank sketch.
            k must be from 1 to 50 (else an error naming the range); an unusable image is an error saying why."""
            try:
                return handlers.api_search(state, _file_paths(sketch), setting, k)
            except BadQuery as err:
                raise gr.Error(str(err)) from err

        gr.api(search, api_name="search", concurrency_id="search", concurrency_limit=SEARCH_CONCURRENCY)

        def index(uploaded, request: gr.Request, progress=gr.Progress()):  # noqa: B008 (Gradio's progress bar)
            key, report = handlers.index_upload(state, uploaded, lambda f, d: progress(f, desc=d),
                                                request.session_hash or "")
            if key is None:
                return gr.skip(), report, gr.skip(), gr.skip(), gr.skip()
            space, _ = state.space_for(key)
            return key, report, state.info_line(space), gr.Dropdown(choices=space.categories, value=None), None

        gallery_outputs = [space_key, index_report, info, category, instance]
        index_button.click(index, files, gallery_outputs, concurrency_id="index", concurrency_limit=1,
                           api_visibility="private")

        def reset(request: gr.Request):
            galleries.drop(galleries.key_for(request.session_hash or ""), reason="")  # chosen: nothing to report
            choices = state.space.categories if state.space else []
            return None, "Back to the app's gallery.", state.info_line(state.space), gr.Dropdown(
                choices=choices, value=None), None

        reset_button.click(reset, None, gallery_outputs, api_visibility="private")
        if chart is not None:
            figure = functools.cache(lambda: handlers.ap_figure(state.evaluation))
            app.load(figure, None, chart, api_visibility="private")
    app.queue(max_size=QUEUE_SIZE, default_concurrency_limit=8)
    return app
