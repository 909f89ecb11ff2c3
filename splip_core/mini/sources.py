"""The artwork of the mini world: the reviewed concept -> icon map, the pinned npm packages, and each icon's bytes.

`data/icon_map.json` (reviewed by hand, no fuzzy matching at build time) declares every icon set: its npm package
and pinned version, licence, design family, role ("sketch": a line/outline set, one "drawer"; "photo": colour
art) and how its icons are named (Iconify names, or OpenMoji-style hexcodes for packages that ship one file per
emoji). For every concept it lists the exact icon names per set. `fetch_packages` gets each package once with
`npm pack` (or reads it from a folder) and `Artwork` returns an icon as standalone SVG text or raster bytes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

ROLES = ("sketch", "photo")
# Never fetched or used: kept back for an independent check of the shipped world.
RESERVED_PACKAGES = frozenset({"@iconify-json/fluent-emoji-high-contrast", "@iconify-json/icon-park-outline"})


class IconMapError(ValueError):
    """The icon map is malformed or names an icon that its package does not have."""


@dataclass(frozen=True)
class IconSet:
    """One icon set of the map: where its art comes from and what the world uses it for."""

    key: str
    package: str
    version: str
    license: str
    family: str
    role: str
    names: str = "iconify"  # "iconify": icons.json names; "hexcode": one file per emoji, `path` with "{}"
    path: str | None = None

    @property
    def stem(self) -> str:
        """File stem `npm pack` gives the tarball: "@scope/name" -> "scope-name-<version>"."""
        return f"{self.package.lstrip('@').replace('/', '-')}-{self.version}"


@dataclass(frozen=True)
class IconMap:
    """The sets and, per concept, the benchmark lists naming it and its icons per set."""

    sets: dict[str, IconSet]
    concepts: dict[str, dict[str, tuple[str, ...]]]
    lists: dict[str, tuple[str, ...]]
    since: dict[str, str] = field(default_factory=dict)  # concept -> the world version that added it ("v3")

    def packages(self) -> list[tuple[str, str]]:
        """Distinct (package, version) pairs, sorted."""
        return sorted({(s.package, s.version) for s in self.sets.values()})

    def families(self, concept: str) -> set[str]:
        """The sketch families that draw a concept."""
        return {self.sets[k].family for k in self.concepts[concept] if self.sets[k].role == "sketch"}


def default_map_path() -> Path:
    return Path(str(resources.files("splip_core.mini") / "data" / "icon_map.json"))


def load_icon_map(path: str | Path | None = None) -> IconMap:
    """Read and check the icon map (default: the reviewed one shipped in the package)."""
    path = Path(path) if path else default_map_path()
    raw = json.loads(path.read_text(encoding="utf-8"))
    sets = {}
    for key, s in raw["sets"].items():
        if s["package"] in RESERVED_PACKAGES:
            raise IconMapError(f"{path}: set {key!r} uses the reserved package {s['package']}")
        if s["role"] not in ROLES:
            raise IconMapError(f"{path}: set {key!r} has role {s['role']!r}, not one of {ROLES}")
        sets[key] = IconSet(key, s["package"], s["version"], s["license"], s["family"], s["role"],
                            s.get("names", "iconify"), s.get("path"))
    concepts, lists, since = {}, {}, {}
    for name, c in raw["concepts"].items():
        unknown = sorted(set(c["icons"]) - set(sets))
        if unknown:
            raise IconMapError(f"{path}: concept {name!r} uses undeclared sets {unknown}")
        concepts[name] = {k: tuple(v) for k, v in sorted(c["icons"].items()) if v}
        lists[name] = tuple(c.get("lists", ()))
        if "since" in c:
            since[name] = c["since"]
    return IconMap(sets, dict(sorted(concepts.items())), lists, since)


def _extract(tarball: Path, dest: Path) -> Path:
    """Unpack an npm tarball into dest (atomically) and return its `package/` folder."""
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(tarball) as tar:
        tar.extractall(tmp, filter="data")
    tmp.rename(dest)
    return dest / "package"


def fetch_packages(sets: list[IconSet], cache_dir: Path, packages_dir: Path | None = None) -> dict[str, Path]:
    """Package name -> its unpacked `package/` folder.

    With `packages_dir`, each package is read from `<stem>/package/` or `<stem>.tgz` there and nothing is
    downloaded; otherwise the tarball is fetched once with `npm pack name@version` into `cache_dir`.
    """
    cache_dir = Path(cache_dir)
    roots: dict[str, Path] = {}
    for pkg in {s.package: s for s in sets}.values():
        if pkg.package in RESERVED_PACKAGES:
            raise IconMapError(f"{pkg.package} is reserved for an independent check and is never fetched")
        bases = ([Path(packages_dir)] if packages_dir else []) + [cache_dir]
        unpacked = [b / pkg.stem / "package" for b in bases if (b / pkg.stem / "package").is_dir()]
        tarballs = [b / f"{pkg.stem}.tgz" for b in bases if (b / f"{pkg.stem}.tgz").is_file()]
        if unpacked:
            roots[pkg.package] = unpacked[0]
        elif tarballs:
            roots[pkg.package] = _extract(tarballs[0], cache_dir / pkg.stem)
        elif packages_dir:
            raise FileNotFoundError(f"{pkg.package}@{pkg.version}: neither {pkg.stem}/ nor {pkg.stem}.tgz "
                                    f"in {packages_dir}")
        else:
            cache_dir.mkdir(parents=True, exist_ok=True)
            subprocess.run(["npm", "pack", f"{pkg.package}@{pkg.version}", "--pack-destination", str(cache_dir)],
                           check=True, capture_output=True)
            roots[pkg.package] = _extract(cache_dir / f"{pkg.stem}.tgz", cache_dir / pkg.stem)
    return roots


def package_license(root: Path) -> str:
    """The licence a package declares about itself: Iconify's info.json, else package.json's `license`."""
    info = root / "info.json"
    if info.is_file():
        lic = json.loads(info.read_text()).get("license", {})
        return lic.get("spdx") or lic.get("title") or "unknown"
    meta = json.loads((root / "package.json").read_text())
    return str(meta.get("license") or "unknown")


class Artwork:
    """Icon bytes of every set: SVG text (Iconify icons wrapped in an <svg>) or the package's file."""

    def __init__(self, icon_map: IconMap, roots: dict[str, Path]):
        self.map = icon_map
        self.roots = {name: Path(p) for name, p in roots.items()}
        self._iconify: dict[str, dict] = {}

    def _icons(self, package: str) -> dict:
        if package not in self._iconify:
            self._iconify[package] = json.loads((self.roots[package] / "icons.json").read_text())
        return self._iconify[package]

    def icon_names(self, set_key: str) -> list[str]:
        """Every icon an Iconify set defines (aliases left out)."""
        return list(self._icons(self.map.sets[set_key].package)["icons"])

    def is_svg(self, set_key: str) -> bool:
        s = self.map.sets[set_key]
        return s.names == "iconify" or (s.path or "").endswith(".svg")

    def data(self, set_key: str, name: str) -> bytes:
        """The icon's bytes; IconMapError when the package has no such icon."""
        s = self.map.sets[set_key]
        root = self.roots[s.package]
        if s.names == "hexcode":
            path = root / s.path.format(name)
            if not path.is_file():
                raise IconMapError(f"{s.package}@{s.version} has no {s.path.format(name)} ({set_key}: {name})")
            return path.read_bytes()
        data = self._icons(s.package)
        icon, seen = data["icons"].get(name), {name}
        alias = name
        while icon is None and alias in data.get("aliases", {}):  # exact parent chain only
            alias = data["aliases"][alias]["parent"]
            if alias in seen:
                break
            seen.add(alias)
            icon = data["icons"].get(alias)
        if icon is None:
            raise IconMapError(f"{s.package}@{s.version} has no icon {name!r} ({set_key})")
        w, h = icon.get("width", data.get("width", 16)), icon.get("height", data.get("height", 16))
        left, top = icon.get("left", data.get("left", 0)), icon.get("top", data.get("top", 0))
        return (f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
                f'viewBox="{left} {top} {w} {h}">{icon["body"]}</svg>').encode()
