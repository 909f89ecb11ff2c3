"""The Gradio Blocks layout and its event wiring (`Page`); what each event does lives in `handlers`."""

from __future__ import annotations

import functools
import os
from dataclasses import replace
from typing import Literal

import gradio as gr
from gradio.components.image_editor import EditorData

from splip_core import display_name

from . import handlers
from .handlers import HINT, MAX_K, STROKES, UPLOAD, BadQuery, LatestOnly, Visit
from .sketchpad import sketchpad
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
Strokes = list[list[list[float]]]
Sketch = Strokes | dict | EditorData  # what `/search` takes: strokes, a Quick, Draw! record, or an image
DRAW = "Draw"  # the canvas's tab; the other way in is "Upload a sketch"
LIVE = {"trigger_mode": "always_last", "concurrency_id": "search", "concurrency_limit": SEARCH_CONCURRENCY,
        "api_visibility": "private", "show_progress": "minimal"}


def _file_paths(value):
    """A sketch as `gr.api` hands it over: strokes as they are; an image editor's value (file dicts, already checked
    by Gradio to be uploads) with each file reduced to its local path, as `handlers.canvas_image` reads it."""
    def path(item):
        return item.get("path") if isinstance(item, dict) else item

    if handlers.is_drawing(value):
        return value
    if not isinstance(value, dict):
        return path(value)
    return {"background": path(value.get("background")), "layers": [path(x) for x in value.get("layers") or []],
            "composite": path(value.get("composite"))}


class Page:
    """The app's components and the handlers of their events. Each handler is a method (Gradio reads its signature
    for the request and the API's types; a test calls it directly) and returns a dict keyed by the components it
    updates. A visitor's page state is one `Visit` in one `gr.State`."""

    def __init__(self, state: DemoState):
        self.state = state
        self.latest = LatestOnly()  # per visitor, only the newest search shows its result

    # ------------------------------------------------------------------------------------------------------------
    # the Search tab
    def on_drawing(self, drawing, setting: str, k: int, category: str | None, visit: Visit,
                   request: gr.Request) -> dict:
        """A stroke drawn, undone or cleared on the canvas: search the drawing as it is now."""
        return self._show(drawing, setting, k, category, replace(visit, source=STROKES, instance=None), request,
                          edited=True)

    def on_upload(self, image, setting: str, k: int, category: str | None, visit: Visit,
                  request: gr.Request) -> dict:
        """A photo or scan of a drawing uploaded in Upload a sketch: search it."""
        return self._show(image, setting, k, category, replace(visit, source=UPLOAD), request, edited=True)

    def on_way_in(self, visit: Visit, evt: gr.SelectData) -> dict:
        """The Draw or the Upload a sketch tab chosen: the Search button searches what it shows."""
        return {self.visit: replace(visit, source=STROKES if evt.value == DRAW else UPLOAD)}

    def on_search(self, drawing, image, setting: str, k: int, category: str | None, visit: Visit,
                  request: gr.Request) -> dict:
        """The Search button, or a new setting, k or category: search the chosen way in's drawing or image."""
        return self._show(drawing if visit.source == STROKES else image, setting, k, category, visit, request)

    def on_example(self, visit: Visit, evt: gr.SelectData) -> dict:
        """An example sketch clicked: it goes into Upload a sketch, its category is named and its photo starred."""
        example = self.state.examples[evt.index]
        return {self.upload: handlers.example_canvas(example), self.category: display_name(example.label),
                self.visit: replace(visit, instance=example.instance, source=UPLOAD),
                self.ways_in: gr.Tabs(selected="upload-sketch")}

    def search_api(self, sketch: Sketch, setting: Literal["ZS", "GZS", "FG"] = "GZS", k: int = 10) -> list[dict]:
        """Rank the app's gallery for a sketch: a drawing as Quick, Draw! strokes [[xs, ys], ...] (or [xs, ys, ts],
        or a downloaded ndjson record), or an image editor value (its `composite` image, else `background` under
        `layers`). A list of {rank, photo, category, score, seen}, best first; [] for a blank sketch. k must be from
        1 to 50 (else an error naming the range); a malformed drawing or an unusable image is an error saying why."""
        try:
            return handlers.api_search(self.state, _file_paths(sketch), setting, k)
        except BadQuery as err:
            raise gr.Error(str(err)) from err

    def _show(self, sketch, setting: str, k: int, category: str | None, visit: Visit, request: gr.Request,
              edited: bool = False) -> dict:
        session = request.session_hash or ""
        ticket = self.latest.start(session)
        galleries = self.state.user_spaces
        view = handlers.search_view(self.state, sketch, setting, k, category, visit, galleries.key_for(session),
                                    edited)  # by session, not the State: a State Gradio evicted cannot hide it
        if not self.latest.is_latest(session, ticket):  # a newer search of this visitor has started: drop this one
            return {self.results: gr.skip()}  # (an empty dict would read as one output's value)
        shown = {self.results: view.results, self.baseline: view.baseline, self.guess: view.guess,
                 self.message: view.message, self.summary: view.summary, self.early: view.early,
                 self.visit: view.visit}  # the State set again: its time to live restarts
        return {**shown, self.category: None} if view.cleared else shown

    # ------------------------------------------------------------------------------------------------------------
    # the Your gallery tab
    def on_index(self, uploaded, visit: Visit, request: gr.Request,
                 progress=gr.Progress()) -> dict:  # noqa: B008 (Gradio's progress bar)
        """Photos or a .zip uploaded: index them as this tab's own gallery, held until its visit ends."""
        key, report = handlers.index_upload(self.state, uploaded, lambda f, d: progress(f, desc=d),
                                            request.session_hash or "")
        if key is None:
            return {self.index_report: report}
        space, _ = self.state.space_for(key)
        return {self.visit: replace(visit, gallery=key, instance=None), self.index_report: report,
                self.info: self.state.info_line(space), self.category: gr.Dropdown(choices=space.categories,
                                                                                   value=None)}

    def on_reset(self, visit: Visit, request: gr.Request) -> dict:
        """Back to the app's gallery: the visitor's own is dropped now, not at expiry."""
        galleries = self.state.user_spaces
        galleries.drop(galleries.key_for(request.session_hash or ""), reason="")  # chosen: nothing to report
        space = self.state.space
        return {self.visit: replace(visit, gallery=None, instance=None),
                self.index_report: "Back to the app's gallery.", self.info: self.state.info_line(space),
                self.category: gr.Dropdown(choices=space.categories if space else [], value=None)}

    def _forget(self, visit: Visit | None) -> None:
        """The State's delete callback: the visitor's tab closed or their time to live passed."""
        self.state.user_spaces.drop(visit.gallery if visit else None)

    # ------------------------------------------------------------------------------------------------------------
    def build(self) -> gr.Blocks:
        """The demo's Blocks (queue configured); launch it with `demo.server.serve`."""
        with gr.Blocks(title="SpLIP sketch search", analytics_enabled=False) as app:
            gr.Markdown("# SpLIP: draw a sketch, find the photo\nPrompts learnt on a frozen CLIP, compared with the "
                        "frozen CLIP itself, on categories the prompts saw in training (*seen*) and never saw "
                        "(*unseen*).")
            self.info = gr.Markdown(self.state.info_line(self.state.space), elem_id="info-line")
            if self.state.notices:
                gr.Markdown("\n".join(f"⚠ {n}  " for n in self.state.notices), elem_id="notices")
            self.visit = gr.State(Visit(), time_to_live=self.state.user_spaces.ttl_s, delete_callback=self._forget)
            with gr.Tabs():
                with gr.Tab("Search", id="search"):
                    self._search_tab()
                with gr.Tab("Your gallery", id="upload"):
                    self._gallery_tab()
                with gr.Tab("About this model", id="about"):
                    self._about_tab(app)
            self._wire()
        app.queue(max_size=QUEUE_SIZE, default_concurrency_limit=8)
        return app

    def _search_tab(self) -> None:
        state = self.state
        with gr.Row():
            with gr.Column(scale=2, min_width=340):
                with gr.Tabs() as self.ways_in:
                    with gr.Tab(DRAW, id="draw"):
                        self.canvas = sketchpad(elem_id="sketchpad")
                        gr.Markdown("Draw with the mouse, a pen or a finger: the photos update after every stroke. "
                                    "**Undo** (or Ctrl+Z) takes the last stroke back.", elem_classes="tool-hint")
                    with gr.Tab("Upload a sketch", id="upload-sketch"):
                        self.upload = gr.Image(None, type="pil", image_mode="RGBA", height=520,
                                               sources=("upload", "clipboard", "webcam"), elem_id="upload-sketch",
                                               label="A photo or scan of a drawing on paper")
                self.search_button = gr.Button("Search", variant="primary", elem_id="search-button")
                self.setting = gr.Radio(SETTING_CHOICES, value="GZS", label="Gallery", elem_id="setting")
                self.top_k = gr.Slider(1, MAX_K, value=state.top_k, step=1, label="top-k", elem_id="top-k")
                self.category = gr.Dropdown(state.space.categories if state.space else [], value=None,
                                            allow_custom_value=True, elem_id="category",
                                            label="What are you drawing? (optional: shows precision)")
                self.message = gr.Markdown(HINT, elem_id="message")
                self.early = gr.Markdown("", elem_id="early-retrieval")
                self.guess = gr.Label(num_top_classes=3, label="The model's guess (zero-shot over all category "
                                      "names)", elem_id="guess")
            with gr.Column(scale=3):
                with gr.Row():
                    self.results = gr.Gallery(label="SpLIP", columns=2, allow_preview=False, height="auto",
                                              object_fit="contain", elem_id="results")
                    self.baseline = gr.Gallery(label="Frozen CLIP baseline", columns=2, allow_preview=False,
                                               height="auto", object_fit="contain", elem_id="baseline")
                self.summary = gr.Markdown(handlers.summary_markdown({}), elem_id="summary")
        self.examples = None
        if state.examples:
            self.examples = gr.Gallery([(str(e.path), e.caption) for e in state.examples], columns=8,
                                       fit_columns=False, allow_preview=False, height=230, elem_id="examples",
                                       object_fit="contain",  # a whole doodle, not its middle
                                       label="Example sketches from the offline world's test split: click one")

    def _gallery_tab(self) -> None:
        state = self.state
        gr.Markdown("Search your own photos: upload images or a .zip. Photos in class folders (`cat/1.jpg`) are "
                    "labelled by folder; loose photos are fine. Your gallery is yours alone: "
                    f"{state.user_spaces.describe_limits()}. While it lives, uploading the same photos again is "
                    "instant.")
        self.files = gr.File(file_count="multiple", file_types=["image", ".zip"], elem_id="upload-files",
                             label=f"Photos or .zip ({state.limits.describe()})")
        with gr.Row():
            self.index_button = gr.Button("Index these photos", variant="primary")
            self.reset_button = gr.Button("Back to the app's gallery")
        self.index_report = gr.Markdown()

    def _about_tab(self, app: gr.Blocks) -> None:
        state = self.state
        gr.Markdown(handlers.about_markdown(state))
        gr.Markdown(handlers.evaluation_markdown(state.evaluation, state.evaluation_note))
        if handlers.has_ap_chart(state.evaluation):  # drawn at the first page load, not at startup
            chart = gr.Plot(label="Average precision per category", elem_id="ap-chart")
            figure = functools.cache(lambda: handlers.ap_figure(state.evaluation))
            app.load(figure, None, chart, api_visibility="private")

    def _wire(self) -> None:
        asked = [self.setting, self.top_k, self.category, self.visit]
        shown = [self.results, self.baseline, self.guess, self.message, self.summary, self.early, self.category,
                 self.visit]
        self.canvas.input(self.on_drawing, [self.canvas, *asked], shown, **LIVE)
        self.upload.upload(self.on_upload, [self.upload, *asked], shown, **LIVE)
        self.ways_in.select(self.on_way_in, self.visit, self.visit, api_visibility="private")
        searched = [self.canvas, self.upload, *asked]
        gr.on([self.search_button.click, self.setting.input, self.top_k.release, self.category.input],
              self.on_search, searched, shown, **LIVE)
        if self.examples is not None:
            self.examples.select(self.on_example, self.visit, [self.upload, self.category, self.visit, self.ways_in],
                                 api_visibility="private").then(self.on_search, searched, shown, **LIVE)
        gr.api(self.search_api, api_name="search", concurrency_id="search", concurrency_limit=SEARCH_CONCURRENCY)
        gallery = [self.visit, self.index_report, self.info, self.category]
        self.index_button.click(self.on_index, [self.files, self.visit], gallery, concurrency_id="index",
                                concurrency_limit=1, api_visibility="private")
        self.reset_button.click(self.on_reset, self.visit, gallery, api_visibility="private")


def build_app(state: DemoState) -> gr.Blocks:
    """The demo's Blocks (queue configured); launch it with `demo.server.serve`."""
    return Page(state).build()
