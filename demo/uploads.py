"""Bring-your-own galleries: uploaded photos and zips, or a folder, checked and laid out for `splip_core.gallery`.

Every upload gets a fresh folder. Loose photos keep their (sanitised) names and have no label; a zip is extracted
member by member, with limits on member count, sizes and compression ratio (zip bombs) and every name kept inside
the folder (path traversal), so its class sub-folders become labels (`<class>/<photo>`). Nothing here decodes
images: unreadable ones are skipped and counted later, when the gallery is embedded.
"""

from __future__ import annotations

import re
import shutil
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from splip_core import IMAGE_SUFFIXES, MAX_IMAGE_BYTES

MB = 1024 * 1024
_UNSAFE = re.compile(r"[^\w .()+-]+")
_JUNK = ("__MACOSX", ".DS_Store", "Thumbs.db")


class UploadError(ValueError):
    """An upload refused as a whole; the message names the limit it broke."""


@dataclass(frozen=True)
class UploadLimits:
    """What one upload may hold. `max_file_bytes` is also Gradio's own per-file upload limit."""

    max_file_bytes: int = 200 * MB
    max_images: int = 5000
    max_total_bytes: int = 1024 * MB
    max_ratio: int = 200

    def describe(self) -> str:
        return (f"up to {self.max_file_bytes // MB} MB per file, {self.max_images} photos and "
                f"{self.max_total_bytes // MB} MB unpacked per upload")


@dataclass
class PreparedUpload:
    """The upload's own `folder`, the folder to index (`root`: it or the one wrapper folder inside it), how many
    image files it holds, and what was left out with why."""

    folder: Path
    root: Path
    n_images: int
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _safe_part(part: str) -> str:
    return _UNSAFE.sub("_", part).strip(" .") or "_"


def _safe_relative(name: str) -> PurePosixPath | None:
    """A zip member name as a relative path that stays inside the folder, or None when it cannot."""
    name = name.replace("\\", "/")
    path = PurePosixPath(name)
    if path.is_absolute() or re.match(r"^[A-Za-z]:", name) or ".." in path.parts:
        return None
    parts = [_safe_part(p) for p in path.parts if p not in ("", ".")]
    return PurePosixPath(*parts) if parts else None


def _unique(path: Path) -> Path:
    stem, suffix, n = path.stem, path.suffix, 1
    while path.exists():
        path = path.with_name(f"{stem}-{n}{suffix}")
        n += 1
    return path


class _Budget:
    """Counts images and bytes written for one upload and refuses the upload when a limit is passed."""

    def __init__(self, limits: UploadLimits):
        self.limits, self.images, self.bytes = limits, 0, 0

    def take(self, n_bytes: int) -> None:
        self.images += 1
        self.bytes += n_bytes
        if self.images > self.limits.max_images:
            raise UploadError(f"too many photos: the limit is {self.limits.max_images} per upload")
        if self.bytes > self.limits.max_total_bytes:
            raise UploadError(f"too large: the limit is {self.limits.max_total_bytes // MB} MB of photos per upload")


def _extract_zip(archive: Path, dest: Path, budget: _Budget, skipped: list[tuple[str, str]]) -> None:
    limits = budget.limits
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as err:
        skipped.append((archive.name, f"{archive.name}: not a readable zip ({err})"))
        return
    with zf:
        for info in zf.infolist():
            where = f"{archive.name}:{info.filename}"
            relative = _safe_relative(info.filename)
            if relative is None:
                skipped.append((where, f"{where}: unsafe path outside the upload folder"))
                continue
            raw_parts = info.filename.replace("\\", "/").split("/")
            if info.is_dir() or any(p in _JUNK or (p.startswith(".") and p != ".") for p in raw_parts):
                continue  # folders, macOS and Windows metadata, hidden files
            if relative.suffix.lower() not in IMAGE_SUFFIXES:
                skipped.append((where, f"{where}: not an image file"))
                continue
            if info.file_size > MAX_IMAGE_BYTES:
                skipped.append((where, f"{where}: {info.file_size} bytes is over the {MAX_IMAGE_BYTES // MB} MB "
                                       "per-photo limit"))
                continue
            if info.file_size > limits.max_ratio * max(info.compress_size, 1) and info.file_size > MB:
                ratio = info.file_size // max(info.compress_size, 1)
                raise UploadError(f"{archive.name}: {info.filename} unpacks {ratio}x, over the {limits.max_ratio}x "
                                  "compression limit (a zip bomb?)")
            budget.take(info.file_size)
            target = _unique(dest.joinpath(*relative.parts))
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src:
                    data = src.read(info.file_size + 1)  # never more than the header declares
            except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as err:
                skipped.append((where, f"{where}: unreadable zip member ({err})"))  # corrupt, encrypted, exotic
                continue
            if len(data) != info.file_size:
                skipped.append((where, f"{where}: size does not match the zip header"))
                continue
            target.write_bytes(data)


def gallery_root(folder: Path) -> Path:
    """`folder`, or its only sub-folder when everything sits in one wrapper folder (a zipped "photos/" folder),
    so that the class folders under it become the labels."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and any(p.is_dir() for p in entries[0].iterdir()):
        return gallery_root(entries[0])
    return folder


def prepare_upload(files, upload_root: Path, limits: UploadLimits = UploadLimits()) -> PreparedUpload:
    """Copy uploaded photos and unpack uploaded zips into a new folder under `upload_root`.

    Raises UploadError (naming the limit) for an over-size file, too many photos or a zip bomb, and when the
    upload holds no image file at all; other files are skipped with a reason.
    """
    paths = [Path(f) for f in (files or [])]
    if not paths:
        raise UploadError("no files: upload photos or a .zip of photos (class folders become labels)")
    for path in paths:
        size = path.stat().st_size
        if size > limits.max_file_bytes:
            raise UploadError(f"{path.name} is {size / MB:.0f} MB, over the {limits.max_file_bytes // MB} MB "
                              "per-file upload limit")
    dest = Path(upload_root) / uuid.uuid4().hex[:12]
    dest.mkdir(parents=True)
    budget, skipped = _Budget(limits), []
    try:
        for path in paths:
            if path.suffix.lower() == ".zip":
                _extract_zip(path, dest, budget, skipped)
            elif path.suffix.lower() in IMAGE_SUFFIXES:
                budget.take(path.stat().st_size)
                shutil.copyfile(path, _unique(dest / _safe_part(path.name)))
            else:
                skipped.append((path.name, f"{path.name}: not an image or a .zip"))
        if budget.images == 0:
            raise UploadError(f"no photos found in the upload ({len(skipped)} other files skipped)")
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return PreparedUpload(dest, gallery_root(dest), budget.images, skipped)


def check_gallery_dir(path) -> Path:
    """`path` as an absolute folder, or FileNotFoundError saying what is wrong with it."""
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"gallery folder {folder} does not exist or is not a folder")
    return folder
