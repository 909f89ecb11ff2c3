"""Gallery: folder scanning, labels from class folders, skipped files, restriction to classes, search."""

import numpy as np
import pytest
from PIL import Image

from splip_core.gallery import EmptyGalleryError, Gallery, Hit

PROJECTION = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)


class FakeEmbed:
    """Mean colour -> fixed random projection -> unit vector; counts the images it embeds."""

    def __init__(self):
        self.n_images = 0

    def __call__(self, images):
        self.n_images += len(images)
        means = np.stack([np.asarray(im, dtype=np.float32).mean(axis=(0, 1)) / 255 for im in images])
        x = means @ PROJECTION + 0.1
        return x / np.linalg.norm(x, axis=1, keepdims=True)


def write_photo(path, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "gallery"
    write_photo(root / "cat" / "a.png", (250, 10, 10))
    write_photo(root / "cat" / "more" / "b.jpg", (240, 30, 20))
    write_photo(root / "dog" / "c.png", (10, 250, 10))
    write_photo(root / "dog" / "d.PNG", (20, 230, 40))
    write_photo(root / "loose.png", (10, 10, 250))
    write_photo(root / ".thumbs" / "hidden.png", (0, 0, 0))
    (root / "cat" / "notes.txt").write_text("not a photo")
    (root / "dog" / "broken.jpg").write_bytes(b"garbage")
    return root


def test_from_folder_labels_skips_and_search(tmp_path, folder):
    seen = []
    gallery = Gallery.from_folder(
        folder,
        FakeEmbed(),
        "model-a",
        "faithful",
        cache_dir=tmp_path / "cache",
        progress=False,
        progress_callback=lambda done, total: seen.append((done, total)),
    )
    by_name = {item.path.rsplit("/", 1)[-1]: item.label for item in gallery.items}
    assert by_name == {"a.png": "cat", "b.jpg": "cat", "c.png": "dog", "d.PNG": "dog", "loose.png": None}
    assert gallery.labels == ["cat", "dog"] and len(gallery) == 5 and gallery.dim == 16
    assert gallery.n_non_image == 1
    reasons = {path.rsplit("/", 1)[-1]: why for path, why in gallery.skipped}
    assert set(reasons) == {"notes.txt", "broken.jpg"}
    assert "not an image file" in reasons["notes.txt"]
    assert seen[-1] == (6, 6)  # the broken image counts as processed
    for i, item in enumerate(gallery.items):
        hits = gallery.search(gallery.vectors[i], k=2)
        assert isinstance(hits[0], Hit) and hits[0].path == item.path and hits[0].label == item.label
        assert hits[0].score == pytest.approx(1.0, abs=1e-5) and hits[0].score >= hits[1].score


def test_second_build_uses_the_cache_kept_inside_the_folder(folder):
    Gallery.from_folder(folder, FakeEmbed(), "m", "fast", cache_dir=folder / "cache", progress=False)
    embed = FakeEmbed()
    gallery = Gallery.from_folder(folder, embed, "m", "fast", cache_dir=folder / "cache", progress=False)
    assert embed.n_images == 0 and len(gallery) == 5
    assert gallery.n_non_image == 1  # the cache's own files are not part of the gallery


def test_empty_folders_name_the_folder(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EmptyGalleryError, match=r"no photos in gallery folder .*empty"):
        Gallery.from_folder(empty, FakeEmbed(), "m", "fast", progress=False)
    (empty / "readme.md").write_text("hi")
    with pytest.raises(EmptyGalleryError, match="1 other files skipped"):
        Gallery.from_folder(empty, FakeEmbed(), "m", "fast", progress=False)
    (empty / "bad.jpg").write_bytes(b"")
    with pytest.raises(EmptyGalleryError, match=r"unreadable, e\.g\. .*bad\.jpg: empty file"):
        Gallery.from_folder(empty, FakeEmbed(), "m", "fast", progress=False)
    with pytest.raises(FileNotFoundError, match="missing"):
        Gallery.from_folder(tmp_path / "missing", FakeEmbed(), "m", "fast", progress=False)


def test_from_items_search_shapes_and_restrict():
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((6, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = ["seen", "unseen", "seen", "unseen", "other", "unseen"]
    gallery = Gallery.from_items([f"p{i}.jpg" for i in range(6)], labels, vectors)
    many = gallery.search(vectors[:2], k=10)
    assert len(many) == 2 and all(len(hits) == 6 for hits in many)
    assert many[1][0].path == "p1.jpg"
    zs = gallery.restrict(["unseen"])
    assert len(zs) == 3 and zs.labels == ["unseen"]
    hits = zs.search(vectors[0], k=10)
    assert {h.path for h in hits} == {"p1.jpg", "p3.jpg", "p5.jpg"}
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert scores == pytest.approx(sorted((vectors[[1, 3, 5]] @ vectors[0]).tolist(), reverse=True), abs=1e-6)
    with pytest.raises(ValueError, match="unsen"):
        gallery.restrict(["unsen"])
    with pytest.raises(ValueError, match="dimension 4 but the index has dimension 8"):
        gallery.search(np.ones(4), k=1)
    with pytest.raises(EmptyGalleryError):
        Gallery.from_items([], None, np.empty((0, 8)))
    with pytest.raises(ValueError, match="2 paths but 1 labels"):
        Gallery.from_items(["a", "b"], ["x"], vectors[:2])


def test_faiss_backend_gives_the_same_hits(folder):
    exact = Gallery.from_folder(folder, FakeEmbed(), "m", "fast", progress=False)
    flat = Gallery.from_folder(folder, FakeEmbed(), "m", "fast", progress=False, backend="faiss-flat")
    for a, b in zip(exact.search(exact.vectors, 3), flat.search(exact.vectors, 3), strict=True):
        assert [h.path for h in a] == [h.path for h in b]


def test_milvus_backed_restrict_keeps_the_full_collection(tmp_path):
    vectors = np.eye(4, dtype=np.float32)
    options = {"uri": str(tmp_path / "g.db"), "collection": "photos"}
    gallery = Gallery.from_items(
        ["a", "b", "c", "d"], ["x", "y", "x", "y"], vectors, backend="milvus", index_options=options
    )
    subset = gallery.restrict(["y"])
    assert sorted(h.path for h in subset.search(np.ones(4), k=10)) == ["b", "d"]
    assert sorted(h.path for h in gallery.search(np.ones(4), k=10)) == ["a", "b", "c", "d"]
    for g in (gallery, subset):
        g.index.close()
