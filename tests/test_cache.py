"""Embedding cache: incremental reuse, invalidation by content / model / mode, skipped files, atomic saves."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from splip_core.cache import EmbeddingCache

PROJECTION = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)


class FakeEmbed:
    """Mean colour -> fixed random projection -> unit vector; records the size of every call."""

    def __init__(self, fail_on_call: int | None = None):
        self.calls: list[int] = []
        self.fail_on_call = fail_on_call

    def __call__(self, images):
        self.calls.append(len(images))
        if self.fail_on_call == len(self.calls):
            raise RuntimeError("model crashed")
        means = np.stack([np.asarray(im, dtype=np.float32).mean(axis=(0, 1)) / 255 for im in images])
        x = means @ PROJECTION + 0.1
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    @property
    def n_images(self) -> int:
        return sum(self.calls)


def write_photo(path, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)
    return str(path)


@pytest.fixture
def photos(tmp_path):
    return [write_photo(tmp_path / "photos" / f"{i}.png", (40 * i, 255 - 30 * i, 7 * i)) for i in range(5)]


def test_second_run_embeds_nothing_and_returns_same_vectors(tmp_path, photos):
    embed, seen = FakeEmbed(), []
    first = EmbeddingCache(tmp_path / "cache", "model-a", "faithful").get_or_compute(
        photos, embed, batch_size=2, progress=False, progress_callback=lambda d, t: seen.append((d, t))
    )
    assert embed.calls == [2, 2, 1]
    assert seen == [(0, 5), (2, 5), (4, 5), (5, 5)]
    assert first.paths == photos and first.vectors.shape == (5, 16) and first.n_computed == 5
    again = FakeEmbed()
    second = EmbeddingCache(tmp_path / "cache", "model-a", "faithful").get_or_compute(photos, again, progress=False)
    assert again.calls == [] and second.n_computed == 0
    np.testing.assert_array_equal(second.vectors, first.vectors)
    np.testing.assert_allclose(first.vectors, FakeEmbed()([Image.open(p) for p in photos]), atol=1e-6)


def test_added_changed_and_removed_files(tmp_path, photos):
    cache_dir = tmp_path / "cache"
    EmbeddingCache(cache_dir, "m", "fast").get_or_compute(photos, FakeEmbed(), progress=False)
    write_photo(tmp_path / "photos" / "0.png", (1, 2, 250))  # changed content (and size/mtime)
    new = write_photo(tmp_path / "photos" / "new.png", (90, 90, 90))
    current = [*photos[:4], new]  # photos[4] removed from the gallery
    embed = FakeEmbed()
    cache = EmbeddingCache(cache_dir, "m", "fast")
    result = cache.get_or_compute(current, embed, progress=False)
    assert embed.n_images == 2 and result.n_computed == 2
    np.testing.assert_allclose(result.vectors[0], FakeEmbed()([Image.open(photos[0])])[0], atol=1e-6)
    manifest = json.loads(cache.manifest_path.read_text())
    assert sorted(manifest["files"]) == sorted(current)
    assert len(manifest["hashes"]) == 5
    assert np.load(cache.directory / manifest["vectors"]).shape == (5, 16)
    assert len(list(cache.directory.glob("vectors-*.npy"))) == 1
    assert not list(cache.directory.glob("*.tmp"))


def test_other_model_or_mode_is_never_reused(tmp_path, photos):
    cache_dir = tmp_path / "cache"
    EmbeddingCache(cache_dir, "model-a", "faithful").get_or_compute(photos, FakeEmbed(), progress=False)
    for model_id, mode in [("model-b", "faithful"), ("model-a", "fast")]:
        embed = FakeEmbed()
        EmbeddingCache(cache_dir, model_id, mode).get_or_compute(photos, embed, progress=False)
        assert embed.n_images == 5, (model_id, mode)
    embed = FakeEmbed()
    EmbeddingCache(cache_dir, "model-a", "faithful").get_or_compute(photos, embed, progress=False)
    assert embed.n_images == 0  # the others lived in their own sub-directories
    assert len(list(cache_dir.iterdir())) == 3


def test_foreign_or_corrupt_manifest_is_ignored_with_a_warning(tmp_path, photos, caplog):
    cache = EmbeddingCache(tmp_path / "cache", "model-a", "faithful")
    cache.get_or_compute(photos, FakeEmbed(), progress=False)
    manifest = json.loads(cache.manifest_path.read_text())
    cache.manifest_path.write_text(json.dumps({**manifest, "model_id": "model-b"}))
    embed = FakeEmbed()
    with caplog.at_level(logging.WARNING, logger="splip_core.cache"):
        EmbeddingCache(tmp_path / "cache", "model-a", "faithful").get_or_compute(photos, embed, progress=False)
    assert embed.n_images == 5 and "written for model 'model-b'" in caplog.text
    cache.manifest_path.write_text("{ truncated")
    embed = FakeEmbed()
    EmbeddingCache(tmp_path / "cache", "model-a", "faithful").get_or_compute(photos, embed, progress=False)
    assert embed.n_images == 5 and "unreadable embedding cache" in caplog.text


def test_unreadable_files_are_skipped_with_reason(tmp_path, photos):
    corrupt = tmp_path / "photos" / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    text = tmp_path / "photos" / "notes.png"
    text.write_text("hello")
    missing = str(tmp_path / "photos" / "gone.png")
    embed = FakeEmbed()
    paths = [photos[0], str(corrupt), str(text), missing, photos[1]]
    result = EmbeddingCache(tmp_path / "cache", "m", "fast").get_or_compute(paths, embed, progress=False)
    assert result.paths == [photos[0], photos[1]] and result.vectors.shape == (2, 16)
    reasons = dict(result.skipped)
    assert set(reasons) == {str(corrupt), str(text), missing}
    assert "corrupt.jpg" in reasons[str(corrupt)] and "image" in reasons[str(corrupt)]
    assert "no such file" in reasons[missing]
    embed = FakeEmbed()
    result = EmbeddingCache(tmp_path / "cache", "m", "fast").get_or_compute(paths, embed, progress=False)
    assert embed.n_images == 0 and len(result.skipped) == 3


def test_identical_content_is_embedded_once(tmp_path, photos):
    copy = tmp_path / "elsewhere" / "copy.png"
    copy.parent.mkdir()
    copy.write_bytes(Path(photos[2]).read_bytes())
    embed = FakeEmbed()
    result = EmbeddingCache(None, "m", "fast").get_or_compute([*photos, str(copy)], embed, progress=False)
    assert embed.n_images == 5
    np.testing.assert_array_equal(result.vectors[2], result.vectors[5])


def test_crash_keeps_finished_batches_and_a_valid_cache(tmp_path, photos):
    cache_dir = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="model crashed"):
        EmbeddingCache(cache_dir, "m", "fast").get_or_compute(
            photos, FakeEmbed(fail_on_call=2), batch_size=2, progress=False
        )
    embed = FakeEmbed()
    result = EmbeddingCache(cache_dir, "m", "fast").get_or_compute(photos, embed, batch_size=2, progress=False)
    assert embed.n_images == 3 and len(result.paths) == 5


def test_in_memory_cache_writes_nothing(tmp_path, photos):
    result = EmbeddingCache(None, "m", "fast").get_or_compute(photos, FakeEmbed(), progress=False)
    assert result.vectors.shape == (5, 16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]


def test_bad_embed_fn_output_is_an_error(tmp_path, photos):
    cache = EmbeddingCache(None, "m", "fast")
    with pytest.raises(ValueError, match="expected"):
        cache.get_or_compute(photos, lambda images: np.zeros((1, 4)), progress=False)


def test_unwritable_cache_still_returns_embeddings(tmp_path, photos, caplog):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should go")
    with caplog.at_level(logging.WARNING, logger="splip_core.cache"):
        result = EmbeddingCache(blocker, "m", "fast").get_or_compute(photos, FakeEmbed(), progress=False)
    assert result.vectors.shape == (5, 16) and "could not save the embedding cache" in caplog.text


def test_seed_is_used_only_for_matching_model_mode_and_content(tmp_path, photos):
    """A shipped seed spares the embedding when fingerprint, mode and content hash match, and only then."""
    from splip_core.cache import prebuild_seed

    seed = tmp_path / "seed"
    prebuild_seed(photos[:4], FakeEmbed(), "m1", "fast", seed)
    assert sum(f.stat().st_size for f in seed.rglob("vectors.npy")) < 4 * 16 * 2 + 200  # float16
    exact = FakeEmbed()(
        [Image.open(p).convert("RGB") for p in photos])
    write_photo(Path(photos[0]), (1, 2, 3))  # edited after the seed was written: its hash no longer matches
    embed = FakeEmbed()
    result = EmbeddingCache(tmp_path / "cache", "m1", "fast", seeds=[seed]).get_or_compute(photos, embed)
    assert embed.n_images == 2 and result.n_computed == 2  # the edited photo and the one not in the seed
    np.testing.assert_allclose(result.vectors[1:], exact[1:], atol=1e-3)
    assert EmbeddingCache(tmp_path / "cache", "m1", "fast").get_or_compute(photos, FakeEmbed()).n_computed == 0
    for model_id, mode in (("m2", "fast"), ("m1", "faithful")):
        embed = FakeEmbed()
        EmbeddingCache(None, model_id, mode, seeds=[seed]).get_or_compute(photos, embed)
        assert embed.n_images == 5


def test_unreadable_seed_is_ignored_with_a_warning(tmp_path, photos, caplog):
    from splip_core.cache import entry_name, prebuild_seed

    seed = tmp_path / "seed"
    prebuild_seed(photos, FakeEmbed(), "m1", "fast", seed)
    (seed / entry_name("m1", "fast") / "vectors.npy").write_bytes(b"junk")
    embed = FakeEmbed()
    with caplog.at_level(logging.WARNING):
        EmbeddingCache(None, "m1", "fast", seeds=[seed]).get_or_compute(photos, embed)
    assert embed.n_images == 5 and "ignoring embedding seed" in caplog.text
