"""The demo served on localhost, driven through `gradio_client` and plain HTTP: the `/search` API (strokes and
images, malformed drawings), concurrent clients, which files the server will hand out, the upload size limit, and
`--share` without a network."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gradio as gr
import gradio.networking
import httpx
import pytest
from _builders import PHOTOS_PER_CLASS, SEEN, UNSEEN, free_port
from gradio_client import Client, handle_file
from PIL import Image, ImageDraw

from demo import DemoState, build_app
from demo.server import serve
from demo.uploads import UploadLimits

K = 4
pytestmark = pytest.mark.filterwarnings("ignore:(.*no_silent_downcasting|The copy keyword)")  # Gradio's pandas use


@pytest.fixture(scope="module")
def served(demo_world, tmp_path_factory):
    state = DemoState.create(cache_dir=tmp_path_factory.mktemp("cache"), top_k=K, mini_dir=demo_world,
                             limits=UploadLimits(max_file_bytes=1024 * 1024))
    app = build_app(state)
    url, _ = serve(app, state, "127.0.0.1", free_port(), block=False)
    yield state, url
    app.close()


@pytest.fixture(scope="module")
def client(served):
    return Client(served[1], verbose=False)


@pytest.fixture(scope="module")
def sketches(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sketches")
    drawn, blank = Image.new("RGB", (512, 512), "white"), Image.new("RGB", (512, 512), "white")
    ImageDraw.Draw(drawn).line([(150, 150), (300, 330), (350, 160)], fill="black", width=8)
    drawn.save(folder / "drawn.png")
    blank.save(folder / "blank.png")
    return {name: {"background": None, "layers": [], "composite": handle_file(str(folder / f"{name}.png"))}
            for name in ("drawn", "blank")}


def test_search_endpoint_returns_the_ranked_list(client, sketches):
    assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == {"/search"}
    rows = client.predict(sketches["drawn"], "GZS", K, api_name="/search")
    assert [r["rank"] for r in rows] == list(range(1, K + 1))
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    for row in rows:
        folder = row["photo"].split("/")[0]
        assert folder in SEEN + UNSEEN and row["seen"] == (folder in SEEN)
    zs = client.predict(sketches["drawn"], "ZS", K, api_name="/search")
    assert {r["seen"] for r in zs} == {False}


def test_blank_sketch_is_an_empty_list_not_an_error(client, sketches):
    assert client.predict(sketches["blank"], "GZS", K, api_name="/search") == []
    assert client.predict([], "GZS", K, api_name="/search") == []


DRAWING = [[[150, 300, 350], [150, 330, 160], [0, 40, 90]], [[120, 380], [400, 400], [300, 360]]]


def test_a_drawing_as_strokes_or_as_its_ndjson_record_is_ranked_as_the_page_ranks_it(client, served):
    """What the canvas sends, what its "Download drawing" saves (a Quick, Draw! record) and its strokes without
    times all get the ranking the page shows for that drawing."""
    from demo.handlers import search_view

    record = json.loads(json.dumps({"word": "", "countrycode": "", "recognized": False, "drawing": DRAWING}))
    rows = client.predict(DRAWING, "GZS", K, api_name="/search")
    assert rows == client.predict(record, "GZS", K, api_name="/search")
    assert rows == client.predict([s[:2] for s in DRAWING], "GZS", K, api_name="/search")
    page = search_view(served[0], DRAWING, "GZS", K)
    assert [r["photo"] for r in rows] == [Path(p).relative_to(served[0].space.root).as_posix() for p, _ in page.results]


MALFORMED = {
    "NaN": ("[[[0, NaN], [1, 2]]]", "finite numbers"),  # JSON has no NaN: gradio_client refuses to send one
    "Infinity": ("[[[0, 1], [Infinity, 2]]]", "finite numbers"),
    "a million points": ([[[0.5] * 1_000_000, [0.5] * 1_000_000]], "over 20000 points"),
    "ten thousand strokes": ([[[1], [1]]] * 10_000, "10000 strokes is over the limit of 200"),
    "wrong nesting": ([[[[1, 2]], [[3, 4]]]], "must be numbers"),
    "strings": ([[["1", "2"], ["3", "4"]]], "must be numbers"),
}


def raw_search(url: str, sketch: str) -> str:
    """/search called over plain HTTP with the sketch's JSON text as it is: the event stream's text."""
    body = f'{{"data": [{sketch}, "GZS", {K}]}}'
    call = httpx.post(f"{url}gradio_api/call/search", content=body, headers={"Content-Type": "application/json"})
    return httpx.get(f"{url}gradio_api/call/search/{call.json()['event_id']}").text


@pytest.mark.parametrize("name", MALFORMED)
def test_a_malformed_drawing_is_an_error_naming_the_problem_and_the_app_keeps_answering(client, served, name):
    drawing, problem = MALFORMED[name]
    if isinstance(drawing, str):
        events = raw_search(served[1], drawing)
        assert "event: error" in events and problem in events
    else:
        with pytest.raises(Exception, match=re.escape(problem)):
            client.predict(drawing, "GZS", K, api_name="/search")
    assert len(client.predict(DRAWING, "GZS", K, api_name="/search")) == K


def test_concurrent_clients_all_get_answers(served, sketches):
    def query(_):
        return Client(served[1], verbose=False).predict(sketches["drawn"], "GZS", K, api_name="/search")

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(query, range(6)))
    assert all(len(a) == K for a in answers) and all(a == answers[0] for a in answers)


def test_server_hands_out_only_gallery_and_example_files(served, tmp_path):
    state, url = served
    photo = next(state.space.root.rglob("*.jpg"))
    secret = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(secret)
    world = state.space.root.parent.parent
    assert httpx.get(f"{url}gradio_api/file={photo}").status_code == 200
    assert httpx.get(f"{url}gradio_api/file={state.examples[0].path}").status_code == 200
    for path in ("/etc/passwd", __file__, world / "model.safetensors", world / "config.json",
                 world / "gallery" / "split.json", secret):
        assert httpx.get(f"{url}gradio_api/file={path}").status_code == 403, path


def test_huge_upload_is_refused_naming_the_limit(served):
    response = httpx.post(f"{served[1]}gradio_api/upload",
                          files={"files": ("huge.zip", b"\0" * (2 * 1024 * 1024), "application/zip")})
    assert response.status_code == 413 and "maximum allowed size of 1048576 bytes" in response.text


def test_share_without_network_says_so_in_one_line_and_serves_locally(served, monkeypatch, capsys):
    """Gradio's own startup lines stay visible; ours (starting with "* ") add the outcome in one line."""
    def no_network(*args, **kwargs):
        raise RuntimeError("Could not get share link from Gradio API Server.")

    monkeypatch.setattr(gradio.networking, "setup_tunnel", no_network)
    state = served[0]
    app = build_app(state)
    try:
        url, share_url = serve(app, state, "127.0.0.1", free_port(), share=True, block=False)
        out = capsys.readouterr().out
        ours = [line for line in out.splitlines() if line.startswith("* ") and "Running on" not in line]
        assert share_url is None and "Running on local URL" in out and len(ours) == 2
        assert ours[0].startswith("* SpLIP demo on") and "1 torch thread" in ours[0]
        assert ours[1].startswith("* No share link:") and "serving locally" in ours[1]
        assert httpx.get(url).status_code == 200
    finally:
        app.close()


def test_search_is_a_typed_api_endpoint_that_refuses_files_it_did_not_receive(client, served):
    """/search comes from gr.api: typed parameters (setting is one of ZS/GZS/FG) and no hidden UI components; a
    raw call naming a server file instead of an upload is refused by Gradio before the handler sees it."""
    params = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/search"]["parameters"]
    assert [p["parameter_name"] for p in params] == ["sketch", "setting", "k"]
    assert params[1]["type"]["enum"] == ["ZS", "GZS", "FG"] and params[2]["parameter_default"] == 10
    url = served[1]
    call = httpx.post(f"{url}gradio_api/call/search", json={"data": [
        {"background": None, "layers": [], "composite": {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}},
        "GZS", 4]})
    events = httpx.get(f"{url}gradio_api/call/search/{call.json()['event_id']}").text
    assert "event: error" in events and "root:" not in events


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    """Files a client might send as a sketch: corrupt bytes, a truncated PNG, a text file, and a PNG whose header
    declares far more pixels than the limit (a decompression bomb)."""
    folder = tmp_path_factory.mktemp("bad-files")
    png = folder / "whole.png"
    Image.new("RGB", (64, 64), "white").save(png)
    (folder / "corrupt.png").write_bytes(b"\x89PNG not really" * 10)
    (folder / "truncated.png").write_bytes(png.read_bytes()[:40])
    (folder / "notes.png").write_text("a shopping list, not a drawing")
    header = bytearray(png.read_bytes())
    header[16:24] = (60_000).to_bytes(4, "big") * 2  # IHDR width and height: 60,000 x 60,000
    (folder / "huge.png").write_bytes(bytes(header))
    return folder


@pytest.mark.parametrize("name", ["corrupt", "truncated", "notes", "huge"])
def test_a_bad_sketch_file_is_refused_without_server_internals(client, served, bad_files, name):
    """The API's error and the page's message say what is wrong, never where the server keeps the file."""
    from demo.handlers import search_view

    sketch = {"background": None, "layers": [], "composite": handle_file(str(bad_files / f"{name}.png"))}
    with pytest.raises(Exception, match="not a usable image") as caught:
        client.predict(sketch, "GZS", K, api_name="/search")
    view = search_view(served[0], {"background": None, "layers": [], "composite": str(bad_files / f"{name}.png")},
                       "GZS", K)
    for message in (str(caught.value), view.message):
        assert "cannot be searched" in message or "not a usable image" in message
        assert "/" not in message and "\\" not in message and f"{name}.png" not in message, message
        assert "tmp" not in message.lower() and "gradio" not in message.lower(), message
        assert "object at 0x" not in message and "Traceback" not in message, message


@pytest.mark.parametrize("k", [0, -3, 51, 100_000])
def test_k_outside_1_to_50_is_refused_naming_the_range(client, sketches, k):
    with pytest.raises(Exception, match="from 1 to 50"):
        client.predict(sketches["drawn"], "GZS", k, api_name="/search")
    everything = len(SEEN + UNSEEN) * PHOTOS_PER_CLASS  # under 50: k = 50 returns the whole gallery
    assert len(client.predict(sketches["drawn"], "GZS", 50, api_name="/search")) == everything


def test_gradio_queues_rebuild_their_monitoring_summary_every_hundredth_event_not_every_event():
    from demo.ui import ANALYTICS_EVERY

    with gr.Blocks() as blocks:  # any queue made after demo.ui is imported: the app's, the load test's floor
        gr.Markdown("x")
    blocks.queue()
    assert ANALYTICS_EVERY == 100 and blocks._queue.ANAYLTICS_CACHE_FREQUENCY == ANALYTICS_EVERY
