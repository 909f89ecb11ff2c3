"""The demo in a real browser: Debian's chromium, driven by Playwright, draws on the stroke canvas with the mouse
and with touch, stroke by stroke, and checks the captioned results, the rank strip after each stroke, undo (button
and Ctrl+Z), that the downloaded drawing sent to /search ranks as the page did, the retrieval-setting switch, the
cleared canvas, the example sketches and an uploaded gallery.

Leaves screenshots in artifacts/: demo-browser.png (the test world) and app.jpg (the shipped app after a doodle, the
README's picture: `SPLIP_SCREENSHOT=docs/app.jpg pytest tests/test_demo_browser.py -k shipped` writes it there).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from _builders import PHOTOS_PER_CLASS, UNSEEN, free_port
from gradio_client import Client

from demo import DemoState, build_app
from demo.handlers import HINT
from demo.server import serve

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "artifacts"
K = 8  # more than the unseen photos, so switching GZS -> ZS visibly shrinks the gallery
CAPTION = re.compile(r"^★? ?[a-z ]+ · [01]\.\d{3} · (seen|unseen)$")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent: apt-get install -y chromium"),
    pytest.mark.filterwarnings("ignore:(.*no_silent_downcasting|The copy keyword)"),
]


@pytest.fixture(scope="module")
def served(demo_world, tmp_path_factory):
    state = DemoState.create(cache_dir=tmp_path_factory.mktemp("cache"), top_k=K, mini_dir=demo_world)
    app = build_app(state)
    local_url, _ = serve(app, state, "127.0.0.1", free_port(), block=False)
    yield state, local_url
    app.close()


@pytest.fixture(scope="module")
def url(served):
    return served[1]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield browser
        browser.close()


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    page.goto(url)
    page.wait_for_selector("#sketchpad canvas")
    return page


@pytest.fixture(scope="module")
def page(browser, url):
    return open_page(browser, url)


def captions(page, gallery: str) -> list[str]:
    return page.locator(f"#{gallery} .caption-label").all_inner_texts()


def wait_for_captions(page, gallery: str, count: int, also: str = "true") -> list[str]:
    page.wait_for_function(f"""() => {{
        const labels = [...document.querySelectorAll('#{gallery} .caption-label')].map(e => e.innerText);
        return labels.length === {count} && ({also});
    }}""")
    return captions(page, gallery)


def settled_captions(page, gallery: str, count: int) -> list[str]:
    """The gallery's captions once there are `count` and they stay the same for half a second: the strip under
    the canvas can show a search's answer a moment before its gallery does."""
    shown = None
    while True:
        now = wait_for_captions(page, gallery, count)
        if now == shown:
            return now
        shown = now
        page.wait_for_timeout(500)


def canvas_centre(page) -> tuple[float, float, float]:
    """The drawing canvas's centre and side on the page, scrolled into view."""
    canvas = page.locator("#sketchpad canvas")
    canvas.scroll_into_view_if_needed()  # a control below it (the category list) may have scrolled the page
    box = canvas.bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, min(box["width"], box["height"])


def stroke(page, points) -> None:
    """One mouse-drawn stroke through `points`, given as fractions of the canvas from its centre."""
    cx, cy, side = canvas_centre(page)
    page.mouse.move(cx + points[0][0] * side, cy + points[0][1] * side)
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(cx + x * side, cy + y * side, steps=2)
    page.mouse.up()


def touch_stroke(page, points) -> None:
    """One finger-drawn stroke through `points` (fractions of the canvas from its centre), as a touch screen sends
    it: touchStart, touchMove per point, touchEnd."""
    cx, cy, side = canvas_centre(page)
    cdp = page.context.new_cdp_session(page)
    at = [{"x": cx + x * side, "y": cy + y * side} for x, y in points]
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [at[0]]})
    for point in at[1:]:
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


def wait_for_strip(page, category: str, strokes: int) -> str:
    """The early-retrieval strip once it shows `strokes` points for `category` (SpLIP's side of it)."""
    page.wait_for_function(f"""() => {{
        const text = document.querySelector('#early-retrieval').innerText;
        const points = text.split('·')[0].split('→').length;
        return text.startsWith({category + " after each stroke"!r}) && points === {strokes};
    }}""")
    return page.locator("#early-retrieval").inner_text()


def canvas_button(page, action: str):
    return page.locator(f"#sketchpad [data-action={action}]")


def draw_tab(page) -> None:
    page.get_by_role("tab", name="Draw").click()
    page.locator("#sketchpad canvas").wait_for()


def test_drawing_searches_and_the_page_responds(page):
    stroke(page, [(-0.2, -0.2), (0.05, 0.15), (0.2, -0.15)])
    stroke(page, [(-0.15, 0.2), (0.15, 0.2)])
    gzs = wait_for_captions(page, "results", K)
    assert all(CAPTION.match(c) for c in gzs), gzs
    assert all(CAPTION.match(c) for c in wait_for_captions(page, "baseline", K))
    assert len(page.locator("#guess").inner_text().strip()) > 0

    page.get_by_text("ZS: unseen categories only").click()
    n_unseen = len(UNSEEN) * PHOTOS_PER_CLASS
    zs = wait_for_captions(page, "results", n_unseen, "labels.every(l => l.endsWith('· unseen'))")
    assert zs != gzs
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "demo-browser.png"), full_page=True)

    canvas_button(page, "clear").click()
    page.wait_for_function("document.querySelector('#message').innerText.includes('Draw something')")
    assert HINT.split("(")[0].strip() in page.locator("#message").inner_text()
    assert captions(page, "results") == [] and canvas_button(page, "undo").is_disabled()

    thumbnails = page.locator("#examples button.thumbnail-item img")
    thumbnails.first.wait_for()
    fits = thumbnails.evaluate_all("els => els.map(e => getComputedStyle(e).objectFit)")
    assert fits and set(fits) == {"contain"}  # a whole doodle in each thumbnail, not its middle
    page.locator("#examples button.thumbnail-item").last.click()  # an unseen example, with its label known
    wait_for_captions(page, "results", n_unseen)
    page.wait_for_function("document.querySelector('#message').innerText.includes('precision@')")
    assert "(unseen)" in page.locator("#message").inner_text()
    assert page.get_by_role("tab", name="Upload a sketch").get_attribute("aria-selected") == "true"


def name_category(page, name: str) -> None:
    category = page.locator("#category input")
    category.click()
    category.fill(name)
    option = re.compile(rf"^\W*{re.escape(name)}$")  # "cup" (after the hidden tick), not "coffee cup" or "cupcake"
    page.locator("#category ul li").filter(has_text=option).first.click()
    page.wait_for_function(f"document.querySelector('#category input').value === {name!r}")


def test_a_mouse_doodle_is_traced_stroke_by_stroke_undone_and_downloaded_as_what_search_ranks(page, url, tmp_path):
    """With the category named, each stroke adds its rank for SpLIP and CLIP to the strip under the canvas; undo
    (button or Ctrl+Z) brings back the previous stroke's results; the downloaded ndjson, sent to /search as it is,
    ranks the photos as the page does; clearing the canvas clears the strip."""
    draw_tab(page)
    page.get_by_text("GZS: all categories").click()  # the category must be in the gallery's view (cat is seen)
    name_category(page, "cat")
    strokes = [[(-0.2, -0.1), (0.2, -0.1)], [(-0.2, 0.1), (0.2, 0.1)], [(0.0, -0.25), (0.0, 0.25)]]
    after = []
    for n, points in enumerate(strokes, 1):
        stroke(page, points)
        wait_for_strip(page, "cat", n)
        after.append(settled_captions(page, "results", K))
    text = page.locator("#early-retrieval").inner_text()
    assert re.search(r"cat after each stroke, rank among 5 categories: SpLIP [1-5]( → [1-5]){2} · CLIP", text), text

    canvas_button(page, "undo").click()
    wait_for_strip(page, "cat", 2)
    assert settled_captions(page, "results", K) == after[1]
    stroke(page, strokes[2])
    wait_for_strip(page, "cat", 3)
    page.locator("#early-retrieval").click()  # Ctrl+Z in the category box would be the box's own undo
    page.keyboard.press("Control+z")
    wait_for_strip(page, "cat", 2)
    shown = settled_captions(page, "results", K)
    assert shown == after[1]

    with page.expect_download() as download:
        canvas_button(page, "ndjson").click()
    record = json.loads(Path(download.value.path()).read_text().splitlines()[0])
    assert len(record["drawing"]) == 2 and all(len(s) == 3 for s in record["drawing"])  # xs, ys, ms
    rows = Client(url, verbose=False).predict(record, "GZS", K, api_name="/search")
    assert [f"{r['category']} · {r['score']:.3f} · {'seen' if r['seen'] else 'unseen'}" for r in rows] == shown

    canvas_button(page, "clear").click()
    page.wait_for_function("document.querySelector('#early-retrieval').innerText.trim() === ''")


def test_a_touch_doodle_searches_after_every_stroke_and_the_page_does_not_scroll(browser, url):
    """A finger drawing down the canvas draws (pointer events from touch) instead of scrolling the page."""
    page = browser.new_page(viewport={"width": 900, "height": 700}, has_touch=True)
    page.set_default_timeout(60_000)
    try:
        page.goto(url)
        page.locator("#sketchpad canvas").wait_for()
        name_category(page, "dog")
        canvas_centre(page)
        scrolled = page.evaluate("window.scrollY")
        assert page.evaluate("document.documentElement.scrollHeight > window.innerHeight")  # it could scroll
        for n, points in enumerate([[(-0.2, -0.3), (-0.2, 0.0), (-0.2, 0.3)], [(0.2, 0.3), (0.2, 0.0), (0.2, -0.3)]],
                                   1):
            touch_stroke(page, points)
            wait_for_strip(page, "dog", n)
            wait_for_captions(page, "results", K)
        assert page.evaluate("window.scrollY") == scrolled
        assert page.locator("#sketchpad canvas").evaluate("c => getComputedStyle(c).touchAction") == "none"
    finally:
        page.close()


def test_an_uploaded_gallery_is_searched_then_its_expiry_is_shown(page, served, tmp_path):
    """Upload two photos in this tab, search them, expire them (as the TTL would): the page says so, no results."""
    from PIL import Image

    state = served[0]
    for name, colour in (("mine_a.png", (200, 30, 30)), ("mine_b.png", (30, 30, 200))):
        Image.new("RGB", (32, 32), colour).save(tmp_path / name)
    page.get_by_role("tab", name="Your gallery").click()
    page.locator("#upload-files input[type=file]").set_input_files([str(tmp_path / "mine_a.png"),
                                                                   str(tmp_path / "mine_b.png")])
    page.get_by_role("button", name="Index these photos").click()
    page.wait_for_function("document.body.innerText.includes('Searches in this browser tab now use it')")
    assert "after your last search" in page.locator("body").inner_text()
    page.get_by_role("tab", name="Search").click()
    draw_tab(page)
    stroke(page, [(-0.1, -0.1), (0.1, 0.1)])
    mine = wait_for_captions(page, "results", 2)
    assert sorted(c.split(" · ")[0] for c in mine) == ["mine_a.png", "mine_b.png"]

    state.user_spaces.ttl_s = 0  # the next look-up finds it expired
    page.locator("#search-button").click()
    page.wait_for_function("document.querySelector('#message').innerText.includes('Your uploaded gallery is gone')")
    assert captions(page, "results") == []


SCREENSHOT_DOODLE = "bicycle"  # from benchmarks/doodles.json


def test_the_shipped_app_finds_photos_for_a_doodle_drawn_stroke_by_stroke(browser, tmp_path):
    """The README's picture: the shipped model and gallery (weights/mini), a mouse doodle from the doodle benchmark
    drawn stroke by stroke with its category named; after each stroke the early-retrieval strip grows, and both
    result columns are full at the end."""
    doodles = json.loads((REPO / "benchmarks" / "doodles.json").read_text())
    doodle, side = next(d for d in doodles["doodles"] if d["id"] == SCREENSHOT_DOODLE), doodles["canvas"]
    concept, n_strokes = doodle["concept"], len(doodle["strokes"])
    state = DemoState.create(cache_dir=tmp_path / "cache", top_k=K)
    assert state.space is not None and concept in state.space.categories
    app = build_app(state)
    url, _ = serve(app, state, "127.0.0.1", free_port(), block=False)
    try:
        page = open_page(browser, url)
        name_category(page, concept)  # at once: the editor's blank canvas at page load must not forget it
        for n, points in enumerate(doodle["strokes"], 1):
            stroke(page, [(x / side - 0.5, y / side - 0.5) for x, y in points[::2] + points[-1:]])
            wait_for_strip(page, concept, n)
        strip = rf"{concept} after each stroke, rank among \d+ categories: SpLIP \d+( → \d+){{{n_strokes - 1}}} · CLIP"
        assert re.search(strip, page.locator("#early-retrieval").inner_text())
        wait_for_captions(page, "results", K)
        wait_for_captions(page, "baseline", K)
        page.wait_for_function("[...document.querySelectorAll('#results img')].every(i => i.complete)")
        ARTIFACTS.mkdir(exist_ok=True)
        page.evaluate("window.scrollTo(0, 0)")
        for path in [ARTIFACTS / "app.jpg", *([REPO / os.environ["SPLIP_SCREENSHOT"]]
                                              if os.environ.get("SPLIP_SCREENSHOT") else [])]:
            page.screenshot(path=str(path), full_page=True, type="jpeg", quality=80)
    finally:
        app.close()
