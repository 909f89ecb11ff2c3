"""On-disk cache of gallery photo embeddings, so a gallery is embedded once and only changes are redone.

Layout: ``<cache_dir>/<model>-<mode>-<digest>/`` holds ``manifest.json`` and one ``vectors-*.npy``.
Each (model_id, mode) pair gets its own sub-directory (the digest covers both strings exactly), and the
manifest repeats both and is checked on load, so embeddings from another model or preprocessing mode are
never reused. Vectors are keyed by the sha256 of the file's bytes: renamed or copied photos are not
re-embedded, edited ones are. To avoid re-reading every photo on each run, a file whose size and
modification time match the manifest keeps its recorded hash.

Writes are atomic: the vectors go to a fresh file, then the manifest naming it replaces the old manifest
by rename, so a crash at any point leaves the previous or the new cache, never a mix. The cache mirrors
the latest `get_or_compute` call: entries for files not passed are dropped when it saves.

Seeds are read-only embeddings shipped beside a gallery (`write_seed`, or `python -m splip_core.cache prebuild`),
in the same ``<model>-<mode>-<digest>/`` layout with float16 vectors keyed by content hash only. A seed is used
only when its model fingerprint and mode match exactly, and a photo takes a seed vector only when its sha256 is in
the seed; anything else (other weights, an edited photo) is embedded as usual. float16 keeps a shipped vector
within 1e-3 of the float32 one (re-normalised on load).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from splip_core.preprocess import MAX_IMAGE_BYTES, InvalidImageError, load_image, scan_folder

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SEED_FORMAT = "splip-embedding-seed-1"
EmbedFn = Callable[[list], np.ndarray]


@dataclass
class EmbedResult:
    """Embeddings of the usable files (in input order), the files skipped with why, and how many were new."""

    paths: list[str]
    vectors: np.ndarray
    skipped: list[tuple[str, str]] = field(default_factory=list)
    n_computed: int = 0


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:40] or "x"


def _write_atomic(path: Path, write: Callable) -> None:
    """Call `write(file)` on a temporary file beside `path`, then rename it over `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def entry_name(model_id: str, mode: str) -> str:
    """The sub-directory of a cache or seed folder that holds one (model_id, mode) pair."""
    digest = hashlib.sha256(f"{model_id}\0{mode}".encode()).hexdigest()[:16]
    return f"{_slug(model_id)}-{_slug(mode)}-{digest}"


def read_seed(seed_dir: str | os.PathLike, model_id: str, mode: str) -> dict[str, np.ndarray]:
    """sha256 -> float32 unit vector from the seed for (model_id, mode) in `seed_dir`; {} when there is none or
    it does not match (logged), so the caller embeds as usual."""
    folder = Path(seed_dir) / entry_name(model_id, mode)
    if not (folder / "manifest.json").is_file():
        return {}
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        if manifest.get("format") != SEED_FORMAT or (manifest.get("model_id"), manifest.get("mode")) != (
                model_id, mode):
            raise ValueError(f"written for {manifest.get('model_id')!r} / {manifest.get('mode')!r}")
        vectors = np.load(folder / "vectors.npy", allow_pickle=False).astype(np.float32)
        hashes = manifest["hashes"]
        if vectors.ndim != 2 or len(vectors) != len(hashes) or not np.isfinite(vectors).all():
            raise ValueError(f"{len(hashes)} hashes but vectors of shape {vectors.shape}")
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning("ignoring embedding seed %s (%s)", folder, err)
        return {}
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return dict(zip(hashes, vectors, strict=True))


def write_seed(seed_dir: str | os.PathLike, model_id: str, mode: str, hashes: Sequence[str],
               vectors: np.ndarray) -> Path:
    """Write a seed (float16 vectors keyed by content sha256) for (model_id, mode); returns its folder."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(hashes):
        raise ValueError(f"{len(hashes)} hashes but vectors of shape {vectors.shape}")
    folder = Path(seed_dir) / entry_name(model_id, mode)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {"format": SEED_FORMAT, "model_id": model_id, "mode": mode, "dim": vectors.shape[1],
                "dtype": "float16", "hashes": list(hashes)}
    _write_atomic(folder / "vectors.npy", lambda f: np.save(f, vectors.astype(np.float16)))
    _write_atomic(folder / "manifest.json", lambda f: f.write(json.dumps(manifest).encode()))
    return folder


class EmbeddingCache:
    """Embeddings of image files for one `model_id` (a fingerprint of the weights) and `mode`.

    `cache_dir=None` keeps everything in memory (nothing read or written), with the same skipping,
    batching and progress reporting. `seeds` are read-only seed folders (see the module docstring) consulted
    before embedding anything.
    """

    def __init__(self, cache_dir: str | os.PathLike | None, model_id: str, mode: str,
                 seeds: Sequence[str | os.PathLike] = ()):
        self.model_id, self.mode = str(model_id), str(mode)
        self.directory: Path | None = None
        if cache_dir is not None:
            self.directory = Path(cache_dir).expanduser() / entry_name(self.model_id, self.mode)
        self._seed: dict[str, np.ndarray] = {}
        for seed in seeds:
            self._seed |= read_seed(seed, self.model_id, self.mode)
        self._vectors: dict[str, np.ndarray] = {}  # sha256 -> vector
        self._files: dict[str, list] = {}  # absolute path -> [sha256, size, mtime_ns]
        self._dim: int | None = None
        self._saved: tuple[set[str], dict[str, list]] = (set(), {})  # (hashes, files) as last on disk
        self._load()

    @property
    def manifest_path(self) -> Path | None:
        return None if self.directory is None else self.directory / "manifest.json"

    def _load(self) -> None:
        """Read the manifest and vectors; an unreadable or foreign cache is ignored with a warning."""
        manifest_path = self.manifest_path
        if manifest_path is None or not manifest_path.is_file():
            return
        try:
            manifest = json.loads(manifest_path.read_text())
            if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
                raise ValueError("manifest is not a JSON object with a 'files' object")
            if (manifest.get("model_id"), manifest.get("mode")) != (self.model_id, self.mode):
                log.warning(
                    "ignoring embedding cache %s: written for model %r mode %r, not model %r mode %r",
                    self.directory,
                    manifest.get("model_id"),
                    manifest.get("mode"),
                    self.model_id,
                    self.mode,
                )
                return
            if manifest.get("version") != FORMAT_VERSION:
                log.warning("ignoring embedding cache %s: format version %r", self.directory, manifest.get("version"))
                return
            vectors = np.load(self.directory / manifest["vectors"], allow_pickle=False)
            hashes = manifest["hashes"]
            if vectors.ndim != 2 or len(vectors) != len(hashes):
                raise ValueError(f"{len(hashes)} hashes but vectors of shape {vectors.shape}")
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("ignoring unreadable embedding cache %s (%s); it will be rebuilt", self.directory, err)
            return
        self._dim = vectors.shape[1]
        self._vectors = dict(zip(hashes, vectors.astype(np.float32, copy=False), strict=True))
        self._files = manifest["files"]
        self._saved = (set(hashes), dict(self._files))

    def __len__(self) -> int:
        return len(self._vectors)

    def _file_hash(self, path: str) -> str:
        """sha256 of the file, reusing the manifest's when size and mtime are unchanged."""
        stat = os.stat(path)
        known = self._files.get(path)
        if known is not None and known[1:] == [stat.st_size, stat.st_mtime_ns] and known[0] in self._vectors:
            return known[0]
        if stat.st_size > MAX_IMAGE_BYTES:
            raise InvalidImageError(f"{stat.st_size} bytes is over the {MAX_IMAGE_BYTES} byte limit", path)
        with open(path, "rb") as file:
            digest = hashlib.sha256(file.read()).hexdigest()
        self._files[path] = [digest, stat.st_size, stat.st_mtime_ns]
        return digest

    def get_or_compute(
        self,
        paths: Sequence[str | os.PathLike],
        embed_fn: EmbedFn,
        batch_size: int = 32,
        progress: bool = True,
        progress_callback: Callable[[int, int], None] | None = None,
    ) -> EmbedResult:
        """Embeddings for `paths`; `embed_fn(list of PIL images) -> (n, d) float32` sees only new content.

        Missing, unreadable and non-image files are skipped and returned with the reason. Images are
        decoded one batch at a time. `progress_callback(done, total)` counts images to embed. Whatever was
        computed is saved even if `embed_fn` raises or the run is interrupted.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        files = list(dict.fromkeys(os.path.abspath(p) for p in paths))
        hashes: dict[str, str] = {}
        reasons: dict[str, str] = {}  # path -> why it was skipped
        failed: dict[str, str] = {}  # sha256 -> why that content could not be decoded
        for path in files:
            try:
                hashes[path] = self._file_hash(path)
            except FileNotFoundError:
                reasons[path] = f"{path}: no such file"
            except InvalidImageError as err:
                reasons[path] = str(err)
            except OSError as err:
                reasons[path] = f"{path}: unreadable ({err})"
        todo: dict[str, str] = {}  # sha256 -> first path with that content, for content not cached yet
        for path, digest in hashes.items():
            if digest not in self._vectors and digest in self._seed:
                self._store([digest], self._seed[digest][None])
            elif digest not in self._vectors:
                todo.setdefault(digest, path)
        try:
            self._embed(todo, embed_fn, batch_size, progress, progress_callback, failed)
        finally:
            self._save(files, {digest for digest in hashes.values() if digest in self._vectors})
        for path, digest in hashes.items():
            if digest in failed:
                reasons[path] = failed[digest]
        ok = [path for path in files if path not in reasons]
        vectors = np.stack([self._vectors[hashes[p]] for p in ok]) if ok else np.empty((0, self._dim or 0))
        n_computed = sum(1 for digest in todo if digest in self._vectors)
        return EmbedResult(
            ok, vectors.astype(np.float32, copy=False), [(p, reasons[p]) for p in files if p in reasons], n_computed
        )

    def _embed(self, todo: dict[str, str], embed_fn, batch_size, progress, progress_callback, failed) -> None:
        """Embed the images in `todo` (sha256 -> path) batch by batch; record undecodable ones in `failed`."""
        items = list(todo.items())
        if progress_callback is not None:
            progress_callback(0, len(items))
        with tqdm(total=len(items), disable=not progress or not items, desc="embedding photos", unit="img") as bar:
            for start in range(0, len(items), batch_size):
                chunk = items[start : start + batch_size]
                digests, images = [], []
                for digest, path in chunk:
                    try:
                        images.append(load_image(path))
                        digests.append(digest)
                    except InvalidImageError as err:
                        failed[digest] = str(err)
                if images:
                    self._store(digests, embed_fn(images))
                bar.update(len(chunk))
                if progress_callback is not None:
                    progress_callback(start + len(chunk), len(items))

    def _store(self, digests: list[str], vectors) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(digests):
            raise ValueError(
                f"embed_fn returned shape {vectors.shape} for {len(digests)} images, expected ({len(digests)}, d)"
            )
        if self._dim is not None and vectors.shape[1] != self._dim:
            raise ValueError(f"embed_fn returned dimension {vectors.shape[1]}, the cache holds {self._dim}")
        if not np.isfinite(vectors).all():
            raise ValueError("embed_fn returned NaN or infinite values")
        self._dim = vectors.shape[1]
        self._vectors.update(zip(digests, vectors, strict=True))

    def _save(self, files: list[str], live: set[str]) -> None:
        """Keep only the embedded content of `files`; if anything changed, write vectors then manifest."""
        wanted = set(files)
        for path in [p for p, entry in self._files.items() if p not in wanted or entry[0] not in live]:
            del self._files[path]
        for digest in [d for d in self._vectors if d not in live]:
            del self._vectors[digest]
        if self.directory is None or self._saved == (set(self._vectors), self._files):
            return
        hashes = list(self._vectors)
        matrix = np.stack([self._vectors[d] for d in hashes]) if hashes else np.empty((0, self._dim or 0))
        name = f"vectors-{os.urandom(6).hex()}.npy"
        manifest = {
            "version": FORMAT_VERSION,
            "model_id": self.model_id,
            "mode": self.mode,
            "dim": self._dim,
            "vectors": name,
            "hashes": hashes,
            "files": self._files,
        }
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            _write_atomic(self.directory / name, lambda f: np.save(f, matrix.astype(np.float32, copy=False)))
            _write_atomic(self.manifest_path, lambda f: f.write(json.dumps(manifest).encode()))
        except OSError as err:  # the embeddings are still returned; only the next run pays again
            log.warning("could not save the embedding cache to %s: %s", self.directory, err)
            return
        self._saved = (set(hashes), dict(self._files))
        for old in self.directory.glob("vectors-*.npy"):
            if old.name != name:
                old.unlink(missing_ok=True)
        log.info("saved %d embeddings to %s", len(hashes), self.directory)


def prebuild_seed(paths: Sequence[str | os.PathLike], embed_fn: EmbedFn, model_id: str, mode: str,
                  seed_dir: str | os.PathLike, batch_size: int = 32) -> EmbedResult:
    """Embed `paths` (unreadable files are skipped) and write them as a seed for (model_id, mode) in `seed_dir`."""
    cache = EmbeddingCache(None, model_id, mode)
    result = cache.get_or_compute(paths, embed_fn, batch_size, progress=False)
    write_seed(seed_dir, model_id, mode, [cache._file_hash(p) for p in result.paths], result.vectors)
    return result


def main(argv: list[str] | None = None) -> int:
    """`python -m splip_core.cache prebuild`: ship a gallery's embeddings for a model and its frozen baseline."""
    import argparse

    import torch

    from splip_core.model import SpLIP

    parser = argparse.ArgumentParser(prog="python -m splip_core.cache", description=main.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    prebuild = commands.add_parser("prebuild", help="write embedding seeds for a gallery folder")
    prebuild.add_argument("--model", required=True, help="SpLIP checkpoint folder or Hub id")
    prebuild.add_argument("--gallery", required=True, help="photo folder, as the app indexes it")
    prebuild.add_argument("--out", required=True, help="seed folder, e.g. weights/mini/embeddings")
    prebuild.add_argument("--modes", nargs="+", choices=["faithful", "fast"], default=["faithful", "fast"],
                          help="inference modes to write (default: both; the baseline is written for each)")
    prebuild.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    images, _ = scan_folder(Path(args.gallery))
    if not images:
        raise FileNotFoundError(f"no photos in {args.gallery}")
    model = SpLIP.from_pretrained(args.model)
    for mode in args.modes:
        model.set_inference_mode(mode)  # as the app does it, then the baseline from it: the same fingerprints
        for who, encoder in (("SpLIP", model), ("baseline", model.frozen_baseline())):
            result = prebuild_seed(images, lambda ims, e=encoder: e.encode_photo(ims).numpy(), encoder.fingerprint(),
                                   encoder.config.inference_mode, args.out)
            print(f"{who} {mode}: {len(result.paths)} photos, {len(result.skipped)} skipped, "
                  f"fingerprint {encoder.fingerprint()}")
    size = sum(f.stat().st_size for f in Path(args.out).rglob("*") if f.is_file())
    print(f"wrote {args.out}: {size / 2**20:.2f} MiB")
    return 0


if __name__ == "__main__":
    from splip_core.runtime import run_cli

    raise SystemExit(run_cli(main))
