"""The demo's handlers called directly (no server, no browser): canvas handling, search views and modes, the API's
data, stale results, model fallbacks, uploads (limits, zip bombs, path traversal), the embedding cache, About tab.

`demo_world` (conftest.py) is a fake offline world: a tiny random model with generated photos and sketches.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from _builders import PHOTOS_PER_CLASS, SEEN, UNSEEN
from PIL import Image, ImageDraw

import app as app_module
from demo import handlers
from demo.handlers import HINT, BadQuery, LatestOnly, Visit, canvas_image, search_view
from demo.state import DemoState, UserGalleries, choose_inference_mode, find_examples, load_model
from demo.uploads import UploadError, UploadLimits, prepare_upload
from splip_core import SpLIP, stroke_sketch
from splip_core.preprocess import crop_to_ink, drawn_sketch, is_blank


def drawing(size: int = 512, offset: int = 0) -> dict:
    """A Sketchpad value after a stroke: white background, a transparent layer with black ink (RGB 0 elsewhere)."""
    layer = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    ImageDraw.Draw(layer).line([(150 + offset, 150), (300, 330), (350 - offset, 160)], fill=(0, 0, 0, 255), width=8)
    background = Image.new("RGBA", (size, size), "white")
    return {"background": background, "layers": [layer], "composite": Image.alpha_composite(background, layer)}


def strokes(n: int = 3, offset: int = 0) -> list:
    """A drawing as the page's canvas sends it: n strokes [xs, ys, ts] (canvas pixels, ms since the first point)."""
    lines = [[[150 + offset, 300, 350 - offset], [150, 330, 160]], [[120, 380], [400, 400]], [[250, 250], [100, 420]],
             [[130, 390], [140, 260]]]
    return [[xs, ys, [100 * i + 10 * j for j in range(len(xs))]] for i, (xs, ys) in enumerate(lines[:n])]


@pytest.fixture(scope="module")
def state(demo_world, tmp_path_factory) -> DemoState:
    return DemoState.create(cache_dir=tmp_path_factory.mktemp("cache"), top_k=4, mini_dir=demo_world)


# ----------------------------------------------------------------------------------------------------------------
# canvas
@pytest.mark.parametrize("value", [None, {"background": None, "layers": [], "composite": None},
                                   {"background": Image.new("RGBA", (64, 64), "white"), "layers": [],
                                    "composite": None},
                                   {"background": None, "layers": [], "composite": Image.new("RGBA", (64, 64))}])
def test_empty_or_blank_canvas_is_none(value):
    assert canvas_image(value) is None


def test_a_search_redraws_the_canvas_as_the_model_asks(state, monkeypatch):
    """A model trained on doodle bitmaps (config.sketch_pixels) gets the canvas redrawn as one, in the page's search
    and in the API; without it the canvas is cropped and centred."""
    asked = []

    def spy(image, pixels=None):
        asked.append(pixels)
        return drawn_sketch(image, pixels=pixels)

    monkeypatch.setattr(handlers, "drawn_sketch", spy)
    search_view(state, drawing(), "GZS", 4)
    monkeypatch.setattr(state.model, "config", replace(state.model.config, sketch_pixels=28))
    view = search_view(state, drawing(), "GZS", 4)
    handlers.api_search(state, drawing(), "GZS", 3)
    assert asked == [None, 28, 28] and view.results


def test_canvas_composes_layers_on_white_and_crops_to_the_ink():
    value = drawing()
    value["composite"] = None  # only background + layers, as an API client might send
    image = canvas_image(value)
    assert image.mode == "RGB" and image.width == image.height < 512
    gray = np.asarray(image.convert("L"))
    assert gray[0, 0] == 255 and (gray < 100).any()


def test_crop_to_ink_centres_a_small_doodle():
    canvas = Image.new("RGB", (512, 512), "white")
    ImageDraw.Draw(canvas).rectangle([10, 10, 40, 30], fill="black")
    out = crop_to_ink(canvas)
    ys, xs = np.nonzero(np.asarray(out.convert("L")) < 128)
    assert out.size[0] == out.size[1] < 60
    assert abs((ys.min() + ys.max()) / 2 - out.height / 2) <= 1 and abs((xs.min() + xs.max()) / 2 - out.width / 2) <= 1


def test_drawn_sketch_is_the_blank_check_then_the_crop_from_one_mask():
    rng = np.random.default_rng(0)
    for _ in range(5):
        canvas = Image.new("RGB", (300, 200), "white")
        x, y = int(rng.integers(0, 250)), int(rng.integers(0, 150))
        ImageDraw.Draw(canvas).line([x, y, x + int(rng.integers(1, 50)), y + int(rng.integers(0, 50))], fill="black",
                                    width=int(rng.integers(1, 8)))
        expected = None if is_blank(canvas) else crop_to_ink(canvas)
        got = drawn_sketch(canvas)
        assert (got is None) == (expected is None)
        if got is not None:
            assert got.size == expected.size and np.array_equal(np.asarray(got), np.asarray(expected))
    assert drawn_sketch(Image.new("RGB", (64, 64), "white")) is None
    speck = Image.new("RGB", (512, 512), "white")
    speck.putpixel((3, 3), (0, 0, 0))  # one pixel of ink is still a blank canvas
    assert drawn_sketch(speck) is None and crop_to_ink(speck).size == (2, 2)


# ----------------------------------------------------------------------------------------------------------------
# search
def test_blank_canvas_gives_the_hint_and_searches_nothing(state, monkeypatch):
    monkeypatch.setattr(handlers, "search", lambda *a, **k: pytest.fail("searched a blank canvas"))
    for blank in ({"background": None, "layers": [], "composite": None}, []):
        view = search_view(state, blank, "GZS", 4)
        assert view.message == HINT and view.results == [] and view.baseline == [] and not view.cleared


def test_search_returns_k_captioned_results_for_both_models(state):
    view = search_view(state, drawing(), "GZS", 4)
    assert len(view.results) == 4 and len(view.baseline) == 4
    for path, caption in view.results + view.baseline:
        assert Path(path).is_file()
        category, score, badge = caption.split(" · ")
        assert category in {c.replace("_", " ") for c in SEEN + UNSEEN}
        assert badge == ("seen" if category in SEEN else "unseen") and 0 <= float(score) <= 1
    scores = [float(c.split(" · ")[1]) for _, c in view.results]
    assert scores == sorted(scores, reverse=True)
    assert len(view.guess) == 3 and sum(view.guess.values()) <= 1 + 1e-6


@pytest.mark.parametrize("backend", ["faiss-flat", "milvus"])
def test_other_search_backends_and_fast_mode_give_the_exact_ranking(state, demo_world, tmp_path, backend):
    other = DemoState.create(cache_dir=tmp_path / "cache", top_k=4, mini_dir=demo_world, backend=backend,
                             inference_mode="fast", milvus_uri=str(tmp_path / "gallery.db"))
    assert other.model.config.inference_mode == "fast" and other.backend == backend
    fast_exact = DemoState.create(cache_dir=tmp_path / "cache", top_k=4, mini_dir=demo_world, inference_mode="fast")
    got = search_view(other, drawing(), "GZS", 4)
    want = search_view(fast_exact, drawing(), "GZS", 4)
    assert [p for p, _ in got.results] == [p for p, _ in want.results]


def test_modes_change_the_gallery(state):
    zs = search_view(state, drawing(), "ZS", 10)
    gzs = search_view(state, drawing(), "GZS", 15)
    assert len(zs.results) == len(UNSEEN) * PHOTOS_PER_CLASS
    assert {c.split(" · ")[2] for _, c in zs.results + zs.baseline} == {"unseen"}
    assert {c.split(" · ")[2] for _, c in gzs.results} == {"seen", "unseen"}
    assert "unseen categories" in zs.message


def test_fg_ranks_one_category_and_stars_the_source_photo(state):
    view = search_view(state, drawing(), "FG", 10, category="dog", visit=Visit(instance="dog1"))
    assert len(view.results) == PHOTOS_PER_CLASS
    assert {c.split(" · ")[0].lstrip("★ ") for _, c in view.results} == {"dog"}
    assert next(c for p, c in view.results if Path(p).stem == "dog1").startswith("★ ")
    unlabelled = search_view(state, drawing(), "FG", 10)  # no label: the best guessed category with photos
    assert len({c.split(" · ")[0] for _, c in unlabelled.results}) == 1


def test_known_label_gives_precision_and_a_seen_unseen_summary(state):
    view = search_view(state, drawing(), "GZS", 4, category="hot air balloon")
    assert "**hot air balloon** (unseen): precision@4" in view.message
    view = search_view(state, drawing(), "GZS", 4, category="cat", visit=view.visit)
    rows = view.summary.splitlines()
    assert any(r.startswith("| seen categories | 1 |") for r in rows)
    assert any(r.startswith("| unseen categories | 1 |") for r in rows)


def test_api_search_returns_plain_ranked_rows(state):
    rows = handlers.api_search(state, drawing(), "GZS", 5)
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5]
    assert set(rows[0]) == {"rank", "photo", "category", "score", "seen"}
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    for row in rows:
        folder = row["photo"].split("/")[0]
        assert row["category"] == folder.replace("_", " ") and row["seen"] == (folder in SEEN)
    assert handlers.api_search(state, None) == []
    with pytest.raises(BadQuery, match="setting must be one of"):
        handlers.api_search(state, drawing(), "XYZ")
    with pytest.raises(BadQuery, match="not a usable image"):
        handlers.api_search(state, {"background": None, "layers": [], "composite": b"not an image"})


def test_a_stale_result_never_overwrites_a_newer_one():
    latest = LatestOnly()
    first = latest.start("visitor")
    second = latest.start("visitor")
    other = latest.start("someone else")
    assert not latest.is_latest("visitor", first)
    assert latest.is_latest("visitor", second) and latest.is_latest("someone else", other)


# ----------------------------------------------------------------------------------------------------------------
# models and galleries
def test_unloadable_model_falls_back_to_the_offline_world_with_a_notice(demo_world, tmp_path):
    loaded = load_model(str(tmp_path / "no-such-checkpoint"), mini_dir=demo_world)
    assert loaded.directory == demo_world and "Could not load the model" in loaded.notices[0]
    offline_hub = load_model("nobody/no-such-repo", offline=True, mini_dir=demo_world)
    assert offline_hub.directory == demo_world and offline_hub.notices


def test_missing_offline_world_runs_a_random_tiny_model_honestly(tmp_path):
    state = DemoState.create(cache_dir=tmp_path / "cache", mini_dir=tmp_path / "missing")
    assert "Offline world not built yet" in state.notices[0]
    assert state.space is None and state.examples == [] and state.evaluation is None
    assert "No gallery yet" in search_view(state, drawing(), "GZS", 4).message
    info = state.info_line(state.space)
    assert "random tiny model" in info and "**Gallery:** none" in info


def test_gallery_folder_counts_non_images_and_restarts_from_the_cache(demo_world, tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    for cls in ("cat", "zebra"):
        (folder / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (32, 32), (40 * i, 200, 90)).save(folder / cls / f"{i}.png")
    Image.new("RGB", (32, 32), "red").save(folder / "loose.jpg")
    (folder / "notes.txt").write_text("not a photo")
    (folder / "cat" / "broken.jpg").write_bytes(b"garbage")
    state = DemoState.create(gallery=folder, cache_dir=tmp_path / "cache", mini_dir=demo_world)
    described = state.space.describe()
    assert "5 photos" in described and "1 unlabelled" in described and "2 files skipped (1 not images)" in described
    assert state.space.status("zebra") == "unseen" and state.space.status("cat") == "seen"

    calls = []
    real = SpLIP.encode_photo
    monkeypatch.setattr(SpLIP, "encode_photo", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    again = DemoState.create(gallery=folder, cache_dir=tmp_path / "cache", mini_dir=demo_world)
    assert calls == [] and len(again.space) == 5  # embeddings came from the cache


def test_missing_gallery_folder_is_an_error(demo_world, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        DemoState.create(gallery=tmp_path / "nope", cache_dir=tmp_path / "cache", mini_dir=demo_world)


def test_allowed_paths_are_only_gallery_examples_and_uploads(state, demo_world):
    allowed = {Path(p) for p in state.allowed_paths()}
    assert allowed == {demo_world / "gallery" / "photo", demo_world / "gallery" / "sketch", state.upload_dir}


# ----------------------------------------------------------------------------------------------------------------
# uploads
def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _png(colour=(10, 200, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (24, 24), colour).save(out, "PNG")
    return out.getvalue()


def test_zip_upload_is_labelled_by_folder_and_stays_inside_its_folder(tmp_path):
    archive = _zip(tmp_path / "photos.zip", {
        "photos/cat/a.png": _png(), "photos/cat/b.png": _png((1, 2, 3)), "photos/zebra/c.png": _png((9, 9, 9)),
        "photos/readme.txt": b"hello", "../evil.png": _png(), "/abs/evil.png": _png(), "__MACOSX/x.png": b"junk",
        "photos/cat/.hidden.png": _png()})
    prepared = prepare_upload([archive], tmp_path / "uploads")
    assert prepared.root.name == "photos" and prepared.n_images == 3  # the wrapper folder is looked through
    assert sorted(p.relative_to(prepared.root).as_posix() for p in prepared.root.rglob("*.png")) == [
        "cat/a.png", "cat/b.png", "zebra/c.png"]
    reasons = " ".join(r for _, r in prepared.skipped)
    assert "readme.txt: not an image file" in reasons and reasons.count("unsafe path") == 2
    assert not (tmp_path / "evil.png").exists() and not list((tmp_path / "uploads").rglob("evil.png"))


def test_upload_limits_are_named(tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * 3000)
    with pytest.raises(UploadError, match="per-file upload limit"):
        prepare_upload([big], tmp_path / "u", UploadLimits(max_file_bytes=2000))
    many = _zip(tmp_path / "many.zip", {f"{i}.png": _png() for i in range(4)})
    with pytest.raises(UploadError, match="limit is 3 per upload"):
        prepare_upload([many], tmp_path / "u", UploadLimits(max_images=3))
    bomb = _zip(tmp_path / "bomb.zip", {"huge.bmp": b"\0" * (8 * 1024 * 1024)})
    with pytest.raises(UploadError, match="compression limit"):
        prepare_upload([bomb], tmp_path / "u")
    text = tmp_path / "notes.txt"
    text.write_text("hi")
    with pytest.raises(UploadError, match="no photos found"):
        prepare_upload([text], tmp_path / "u")
    assert not any((tmp_path / "u").iterdir())  # refused uploads leave nothing behind


def test_uploaded_gallery_is_searchable_and_reports_skipped_files(state, tmp_path):
    photo = tmp_path / "mine.png"
    photo.write_bytes(_png((200, 10, 10)))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    progress = []
    key, report = handlers.index_upload(state, [photo, broken, notes], lambda f, d: progress.append(f))
    assert key is not None and "Skipped 2 files" in report and "1 photos" in report
    assert progress and progress[-1] == pytest.approx(1.0)
    view = search_view(state, drawing(), "GZS", 4, space_key=key)
    assert [Path(p).name for p, _ in view.results] == ["mine.png"]
    assert view.results[0][1].startswith("mine.png · ")  # unlabelled: file name and score, no badge
    assert handlers.index_upload(state, [notes])[0] is None


# ----------------------------------------------------------------------------------------------------------------
# examples, About tab, command line
def test_examples_cover_seen_and_unseen_with_their_fg_pair(state):
    examples = {e.label: e for e in state.examples}
    assert set(examples) == set(SEEN + UNSEEN)
    assert examples["guitar"].status == "unseen" and examples["guitar"].instance == "gui0"
    assert examples["cat"].caption == "cat · seen"
    value = handlers.example_canvas(examples["cat"])
    assert value.size == (512, 512) and canvas_image(value) is not None
    ys, _ = np.nonzero(np.asarray(value.convert("L")) < 128)
    assert ys.max() - ys.min() > 300  # the small sketch is scaled up to fill the canvas
    assert len(find_examples(Path(examples["cat"].path).parent.parent, state.split, per_group=1)) == 2


def test_about_tab_shows_the_evaluation_table_and_chart(state):
    table = handlers.evaluation_markdown(state.evaluation)
    assert "| frozen CLIP | 20.0 | 10.0 |" in table and "| SpLIP | 20.0 | 50.0 |" in table
    assert "7 sketches × 9 photos" in table
    assert "| SpLIP − frozen [95% CI] | +20.0 [+5.0, +31.0] | – |" in table
    figure = handlers.ap_figure(state.evaluation)
    assert len(figure.axes) == 2
    assert handlers.ap_figure(None) is None
    assert "evaluation.json missing" in handlers.evaluation_markdown(None, "No evaluation shipped with this model "
                                                                          "(evaluation.json missing).")
    assert "/search" in handlers.about_markdown(state)


def test_command_line_help_and_checks(capsys):
    with pytest.raises(SystemExit):
        app_module.parse_args(["--help"])
    text = capsys.readouterr().out
    for flag in ("--share", "--model", "--gallery", "--offline", "--host", "--port", "--top-k"):
        assert flag in text
    with pytest.raises(SystemExit):
        app_module.parse_args(["--top-k", "0"])
    assert app_module.parse_args(["--top-k", "7", "--port", "9000"]).top_k == 7


def test_mode_comes_from_the_flag_or_splip_mode(monkeypatch):
    monkeypatch.setenv("SPLIP_MODE", "fast")
    assert app_module.parse_args([]).mode == "fast"
    assert app_module.parse_args(["--mode", "faithful"]).mode == "faithful"
    monkeypatch.setenv("SPLIP_MODE", "quick")
    with pytest.raises(SystemExit):
        app_module.parse_args([])
    monkeypatch.delenv("SPLIP_MODE")
    assert app_module.parse_args([]).mode is None


# ----------------------------------------------------------------------------------------------------------------
# many visitors: per-session galleries, expiry, the lean search path, cold start
def _photos(folder: Path, names: list[str], colour) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, name in enumerate(names):
        path = folder / name
        Image.new("RGB", (24, 24), tuple(min(255, c + 20 * i) for c in colour)).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def visitors(state, monkeypatch):
    """The shared state with a fresh, small gallery registry (capacity 2, 30 s to live)."""
    monkeypatch.setattr(state, "user_spaces", UserGalleries(capacity=2, ttl_s=30))
    return state


def test_two_sessions_each_search_only_their_own_upload(visitors, tmp_path):
    state = visitors
    key_a, report = handlers.index_upload(state, _photos(tmp_path / "a", ["a1.png", "a2.png"], (200, 0, 0)),
                                          session="session-a")
    key_b, _ = handlers.index_upload(state, _photos(tmp_path / "b", ["b1.png", "b2.png", "b3.png"], (0, 0, 200)),
                                     session="session-b")
    assert key_a != key_b and "removed 30 s after your last search" in report
    for key, names in ((key_a, {"a1.png", "a2.png"}), (key_b, {"b1.png", "b2.png", "b3.png"})):
        view = search_view(state, drawing(), "GZS", 10, space_key=key)
        assert {Path(p).name for p, _ in view.results} == names
        assert {Path(p).name for p, _ in view.baseline} == names
    assert state.gallery_cache(None, key_a) != state.gallery_cache(None, key_b)
    assert state.gallery_cache(None, key_a).is_dir() and state.gallery_cache(None, key_b).is_dir()
    app_view = search_view(state, drawing(), "GZS", 4)  # no key: the app's gallery, untouched by uploads
    assert all(Path(p).parent.parent == state.space.root for p, _ in app_view.results)


def test_uploading_the_same_photos_again_in_a_session_embeds_nothing(visitors, tmp_path, monkeypatch):
    photos = _photos(tmp_path / "p", ["x.png", "y.png"], (10, 120, 10))
    key, _ = handlers.index_upload(visitors, photos, session="s")
    calls = []
    real = SpLIP.encode_photo
    monkeypatch.setattr(SpLIP, "encode_photo", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    again, _ = handlers.index_upload(visitors, photos, session="s")
    assert again == key and calls == [] and len(visitors.user_spaces) == 1


def test_an_expired_or_evicted_gallery_says_so_and_never_falls_back(visitors, tmp_path):
    state = visitors
    state.user_spaces.ttl_s = 0.2
    before = set(state.upload_dir.iterdir())
    key, _ = handlers.index_upload(state, _photos(tmp_path / "a", ["a1.png"], (200, 0, 0)), session="a")
    folders = [state.gallery_cache(None, key), *(set(state.upload_dir.iterdir()) - before)]
    assert len(folders) == 2 and all(f.is_dir() for f in folders)
    time.sleep(0.3)
    view = search_view(state, drawing(), "GZS", 4, space_key=key)
    assert view.results == [] and view.baseline == []
    assert "Your uploaded gallery is gone: it expired after" in view.message and "Upload it again" in view.message
    assert not any(f.exists() for f in folders)  # photos and cached embeddings are deleted with it

    state.user_spaces.ttl_s = 30  # capacity 2: a third visitor's upload removes the least recently used
    keys = [handlers.index_upload(state, _photos(tmp_path / n, [f"{n}.png"], (9, 9, 9)), session=n)[0]
            for n in ("p", "q")]
    search_view(state, drawing(), "GZS", 4, space_key=keys[0])  # p searched last: q is the least recent
    handlers.index_upload(state, _photos(tmp_path / "r", ["r.png"], (90, 9, 9)), session="r")
    assert "removed to make room" in search_view(state, drawing(), "GZS", 4, space_key=keys[1]).message
    assert [Path(p).name for p, _ in search_view(state, drawing(), "GZS", 4, space_key=keys[0]).results] == ["p.png"]

    state.user_spaces.drop(keys[0])  # what the page's gr.State calls when the tab closes or its TTL passes
    assert "expired" in search_view(state, drawing(), "GZS", 4, space_key=keys[0]).message
    assert len(state.user_spaces) == 1
    state.user_spaces.drop(state.user_spaces.key_for("r"), reason="")  # "Back to the app's gallery": no warning
    for key in (state.user_spaces.key_for("r"), state.user_spaces.key_for("never uploaded")):
        view = search_view(state, drawing(), "GZS", 4, space_key=key)
        assert "gone" not in view.message and all(Path(p).parent.parent == state.space.root for p, _ in view.results)


def test_the_page_state_is_one_visit_whose_expiry_drops_the_visitors_gallery(state, tmp_path):
    import gradio as gr

    from demo import build_app

    app = build_app(state)
    held = [b for b in app.blocks.values() if isinstance(b, gr.State)]
    assert len(held) == 1 and isinstance(held[0].value, Visit) and held[0].time_to_live == state.user_spaces.ttl_s
    photo = tmp_path / "mine.png"
    Image.new("RGB", (16, 16), "red").save(photo)
    key, _ = handlers.index_upload(state, [str(photo)], session="leaving")
    assert state.user_spaces.lookup(key)[0] is not None
    held[0].delete_callback(Visit(gallery=key))  # the tab closed or the time to live passed
    assert state.user_spaces.lookup(key) == (None, f"it expired after {state.user_spaces.ttl_s / 60:.0f} min "
                                                   "without a search")


def test_one_search_preprocesses_once_and_encodes_each_column_once(state, monkeypatch):
    calls = []
    real_encode, real_pre = SpLIP.encode_image, SpLIP.preprocess
    monkeypatch.setattr(SpLIP, "encode_image", lambda self, *a, **k: calls.append(
        "splip" if self is state.model else "baseline") or real_encode(self, *a, **k))
    monkeypatch.setattr(SpLIP, "preprocess", lambda self, im: calls.append("preprocess") or real_pre(self, im))
    view = search_view(state, drawing(), "GZS", 4)
    assert sorted(calls) == ["baseline", "preprocess", "splip"] and view.guess
    calls.clear()
    handlers.api_search(state, drawing(), "GZS", 4)  # the API answers with SpLIP rows only
    assert sorted(calls) == ["preprocess", "splip"]


def test_fast_mode_is_the_default_only_where_the_evaluation_shows_no_loss(demo_world, tmp_path):
    def modes(fast, faithful):
        return {"modes": {"fast": {"mAP@all": fast}, "faithful": {"mAP@all": faithful}}}

    chosen, why = choose_inference_mode(modes(0.1716, 0.1717))
    assert chosen == "fast" and "17.16 (fast) vs 17.17" in why
    assert choose_inference_mode(modes(0.15, 0.17)) == (None, "") and choose_inference_mode(None) == (None, "")
    copy = tmp_path / "world"
    shutil.copytree(demo_world, copy)
    evaluation = json.loads((copy / "evaluation.json").read_text()) | modes(0.2, 0.2)
    (copy / "evaluation.json").write_text(json.dumps(evaluation))
    chosen = DemoState.create(cache_dir=tmp_path / "cache", mini_dir=copy)
    assert chosen.model.config.inference_mode == "fast" and "no accuracy cost" in chosen.info_line(chosen.space)
    forced = DemoState.create(cache_dir=tmp_path / "cache", mini_dir=copy, inference_mode="faithful")
    assert forced.model.config.inference_mode == "faithful" and forced.inference_note == ""


def test_shipped_embeddings_make_a_cold_start_embed_nothing(demo_world, tmp_path, monkeypatch, capsys):
    from splip_core.cache import main as cache_main

    copy = tmp_path / "world"
    shutil.copytree(demo_world, copy)
    assert cache_main(["prebuild", "--model", str(copy), "--gallery", str(copy / "gallery" / "photo"),
                       "--out", str(copy / "embeddings")]) == 0
    assert "SpLIP faithful: 15 photos" in capsys.readouterr().out
    reference = DemoState.create(cache_dir=tmp_path / "plain", mini_dir=demo_world)
    calls = []
    real = SpLIP.encode_photo
    monkeypatch.setattr(SpLIP, "encode_photo", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    cold = DemoState.create(cache_dir=tmp_path / "fresh", mini_dir=copy)
    assert calls == [] and cold.seeds == [copy / "embeddings"]
    np.testing.assert_allclose(cold.space.splip.vectors, reference.space.splip.vectors, atol=2e-3)
    np.testing.assert_allclose(cold.space.baseline.vectors, reference.space.baseline.vectors, atol=2e-3)

    edited = next((copy / "gallery" / "photo" / "cat").iterdir())
    Image.new("RGB", (64, 64), "purple").save(edited)  # content no longer matches its shipped vector
    DemoState.create(cache_dir=tmp_path / "fresh2", mini_dir=copy)
    assert len(calls) == 2  # that one photo, for SpLIP and for the baseline


def test_the_named_category_is_traced_stroke_by_stroke_and_cleared_with_the_canvas(state):
    """Each stroke adds the named category's rank (SpLIP and CLIP among the gallery's categories); an undo goes back
    to the previous stroke's point, a search of the same drawing (the button, a new setting) replaces its own; another
    category or a cleared canvas restarts."""
    visit, views = Visit(), []
    for n in (1, 2, 3):
        views.append(search_view(state, strokes(n), "GZS", 4, category="cat", visit=visit, edited=True))
        visit = views[-1].visit
    ranks = visit.trace["ranks"]
    assert visit.trace["category"] == "cat" and [r["strokes"] for r in ranks] == [1, 2, 3]
    assert 1 <= ranks[0]["SpLIP"] <= 5 and 1 <= ranks[0]["CLIP"] <= 5 and ranks[0]["categories"] == 5
    assert "cat** after each stroke, rank among 5 categories" in views[-1].early
    undone = search_view(state, strokes(2), "GZS", 4, category="cat", visit=visit, edited=True)
    assert undone.visit.trace["ranks"] == ranks[:2] and undone.results == views[1].results  # the 2nd stroke's again
    button = search_view(state, strokes(2), "GZS", 6, category="cat", visit=undone.visit)  # a new k
    assert [r["strokes"] for r in button.visit.trace["ranks"]] == [1, 2]
    other = search_view(state, strokes(3), "GZS", 4, category="dog", visit=visit, edited=True)
    assert other.visit.trace["category"] == "dog" and len(other.visit.trace["ranks"]) == 1
    unnamed = search_view(state, strokes(3), "GZS", 4, visit=visit, edited=True)
    assert unnamed.visit.trace is None and unnamed.early == ""
    cleared = search_view(state, [], "GZS", 4, category="cat", visit=visit, edited=True)
    assert cleared.visit.trace is None and cleared.early == "" and cleared.cleared  # the category is forgotten


def test_only_a_drawing_wiped_after_a_search_or_an_example_forgets_the_category(state):
    """An image editor may send a blank value at page load: a category named before it arrives must stay."""
    empty = {"background": None, "layers": [], "composite": None}
    assert not search_view(state, empty, "GZS", 4, category="cat", edited=True).cleared  # page load
    assert not search_view(state, [], "GZS", 4, category="cat").cleared  # the category's own search
    example = Visit(instance="cat_1")
    assert search_view(state, empty, "GZS", 4, category="cat", visit=example, edited=True).cleared
    drawn = search_view(state, strokes(1), "GZS", 4, category="cat", edited=True)
    assert search_view(state, [], "GZS", 4, category="cat", visit=drawn.visit, edited=True).cleared


def test_a_drawing_sent_as_strokes_is_searched_as_its_stroke_bitmap(state, monkeypatch):
    """Strokes go through `stroke_sketch` at the model's sketch_pixels, in the page's search and in the API alike,
    and rank exactly as that bitmap does; no image is decoded on the way."""
    asked = []

    def spy(drawing, pixels=None):
        asked.append(pixels)
        return stroke_sketch(drawing, pixels)

    monkeypatch.setattr(handlers, "stroke_sketch", spy)
    monkeypatch.setattr(handlers, "canvas_image", lambda *a, **k: pytest.fail("strokes went through the image path"))
    monkeypatch.setattr(state.model, "config", replace(state.model.config, sketch_pixels=28))
    page = search_view(state, strokes(3), "GZS", 4)
    api = handlers.api_search(state, {"word": "", "drawing": strokes(3)}, "GZS", 4)
    assert asked == [28, 28]
    outcome = handlers.search(state, state.space, stroke_sketch(strokes(3), 28), "GZS", 4)
    assert [p for p, _ in page.results] == [h.path for h in outcome.splip]
    assert [r["photo"] for r in api] == [state.space.relative(h.path) for h in outcome.splip]


MALFORMED = {
    "NaN": ([[[0, float("nan")], [1, 2]]], "finite numbers"),
    "a million points": ([[[0.5] * 1_000_000, [0.5] * 1_000_000]], "over 20000 points"),
    "ten thousand strokes": ([[[1], [1]]] * 10_000, "10000 strokes is over the limit of 200"),
    "wrong nesting": ([[[1, 1], [2, 2], [3, 3], [4, 4]]], "not [xs, ys] or [xs, ys, ts]"),
    "strings": ([[["1", "2"], ["3", "4"]]], "must be numbers"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_a_malformed_drawing_is_refused_naming_the_problem_and_searching_goes_on(state, name):
    drawing_, problem = MALFORMED[name]
    view = search_view(state, drawing_, "GZS", 4, category="cat", edited=True)
    assert view.message.startswith("⚠ The drawing cannot be searched") and problem in view.message
    assert view.results == [] and not view.cleared
    with pytest.raises(BadQuery, match=re.escape(problem)):
        handlers.api_search(state, drawing_, "GZS", 4)
    assert len(search_view(state, strokes(2), "GZS", 4).results) == 4


def test_early_markdown_marks_the_top_5_and_says_since_when():
    from demo.handlers import early_markdown

    trace = {"category": "hot_air_balloon", "ranks": [{"SpLIP": r, "CLIP": c, "categories": 230, "strokes": n}
                                                      for n, (r, c) in enumerate(((9, 40), (4, 22), (7, 9), (2, 5),
                                                                                  (1, 3)), 1)]}
    text = early_markdown(trace)
    assert text.startswith("**hot air balloon** after each stroke, rank among 230 categories")
    assert "SpLIP 9 → **4** → 7 → **2** → **1** · CLIP 40 → 22 → 9 → **5** → **3**" in text
    assert text.endswith("In SpLIP's top 5 since stroke 4.")
    assert early_markdown(None) == ""


def test_the_page_handlers_answer_with_the_components_they_update(state):
    """One Visit in, the components to update out (a dict keyed by component), the same search behind them."""
    from types import SimpleNamespace

    from demo.handlers import STROKES, UPLOAD
    from demo.ui import Page

    page = Page(state)
    page.build()
    request = SimpleNamespace(session_hash="page-test")
    shown = page.on_drawing(strokes(2), "GZS", 4, "cat", Visit(instance="cat0"), request)
    assert set(shown) == {page.results, page.baseline, page.guess, page.message, page.summary, page.early, page.visit}
    visit = shown[page.visit]
    assert visit.source == STROKES and visit.instance is None and [r["strokes"] for r in visit.trace["ranks"]] == [2]
    assert [p for p, _ in shown[page.results]] == [p for p, _ in search_view(state, strokes(2), "GZS", 4).results]
    cleared = page.on_drawing([], "GZS", 4, "cat", visit, request)
    assert cleared[page.category] is None and cleared[page.message] == HINT and cleared[page.visit].trace is None
    upload = page.on_way_in(visit, SimpleNamespace(value="Upload a sketch"))[page.visit]
    drawing_again = page.on_way_in(upload, SimpleNamespace(value="Draw"))[page.visit]
    assert upload.source == UPLOAD and drawing_again.source == STROKES
    blank = page.on_search(strokes(2), None, "GZS", 4, None, upload, request)  # the open tab's way in: no image yet
    assert blank[page.message] == HINT and blank[page.results] == []
