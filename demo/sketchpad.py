"""The drawing canvas: a Gradio HTML component (no front-end build, nothing fetched at run time) whose value is the
drawing as Quick, Draw! strokes, `[[xs, ys, ts], ...]`, sent after every stroke, undo and clear.

It records pointer events (mouse, pen and touch alike; the page does not scroll while a finger draws), draws the
strokes, and offers undo (button and Ctrl+Z), clear and "Download drawing" (the Quick, Draw! ndjson record that
`/search` takes as it is, and the PNG). Its behaviour is `sketchpad.js`, its look `sketchpad.css`.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

HERE = Path(__file__).resolve().parent
TEMPLATE = """<div class="sketchpad">
  <canvas width="${side}" height="${side}" role="img"
          aria-label="Drawing canvas: draw with the mouse, a pen or a finger"></canvas>
  <div class="tools">
    <button type="button" data-action="undo" data-needs-drawing title="Undo the last stroke (Ctrl+Z)">↶ Undo</button>
    <button type="button" data-action="clear" data-needs-drawing title="Wipe the drawing">✕ Clear</button>
    <span class="download">Download drawing:
      <button type="button" data-action="ndjson" data-needs-drawing
              title="Quick, Draw! ndjson: send it to /search as it is">ndjson</button>
      <button type="button" data-action="png" data-needs-drawing title="The canvas as a PNG">PNG</button>
    </span>
  </div>
</div>"""


def sketchpad(side: int = 512, brush: int = 6, **kwargs) -> gr.HTML:
    """A `side`-pixel drawing canvas with a `brush`-pixel black pen; its `.input` event fires after each stroke,
    undo and clear, with the drawing as its value. (A function, not a gr.HTML subclass: Gradio writes a .pyi stub
    beside the module of every component class it sees.)"""
    return gr.HTML([], html_template=TEMPLATE, css_template=(HERE / "sketchpad.css").read_text(),
                   js_on_load=(HERE / "sketchpad.js").read_text(), apply_default_css=False, side=side, brush=brush,
                   **kwargs)
