"""The reviewed concept -> icon-name map of the offline world (splip_core/mini/data/icon_map.json).

Checks the file's own consistency only: no npm package is needed.
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAP_PATH = ROOT / "splip_core" / "mini" / "data" / "icon_map.json"
SPLITS = ROOT / "splip_core" / "data" / "splits"
CLASS_FILES = {
    "sketchy": "sketchy_classes.txt",
    "tuberlin": "tuberlin_classes.txt",
    "quickdraw": "quickdraw345_classes.txt",
}
# fmt: off
EVERYDAY = (
    "house", "tree", "sun", "moon", "star", "cloud", "flower", "cat", "dog", "fish", "bird", "butterfly", "car",
    "bicycle", "airplane", "sailboat", "train", "apple", "banana", "cup", "clock", "key", "umbrella", "heart", "book",
    "chair", "guitar", "hat", "eyeglasses", "scissors", "pizza", "mushroom", "snowman", "cactus", "tent", "envelope",
    "light_bulb", "bell", "camera", "telephone",
)
# fmt: on
# Everyday subjects that none of the three benchmark lists has: kept with an empty "lists".
EXTRAS = {"heart"}
RESERVED_PACKAGES = {"@iconify-json/fluent-emoji-high-contrast", "@iconify-json/icon-park-outline"}
MIN_SKETCH_FAMILIES = 4
MIN_PHOTO_SETS = 3


def norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.lower()).strip()


@pytest.fixture(scope="module")
def icon_map() -> dict:
    return json.loads(MAP_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def class_lists() -> dict[str, set[str]]:
    lists = {}
    for key, filename in CLASS_FILES.items():
        lines = (SPLITS / filename).read_text(encoding="utf-8").splitlines()
        lists[key] = {norm(line) for line in lines if line.strip() and not line.startswith("#")}
    return lists


def test_quickdraw_list_has_all_345_categories(class_lists):
    assert len(class_lists["quickdraw"]) == 345


def test_every_concept_is_a_benchmark_class(icon_map, class_lists):
    everywhere = set().union(*class_lists.values())
    for name, entry in icon_map["concepts"].items():
        if norm(name) in EXTRAS:
            assert entry["lists"] == [] and norm(name) not in everywhere
            continue
        assert norm(name) in everywhere, name
        assert entry["lists"] and set(entry["lists"]) <= set(CLASS_FILES), name
        assert entry["lists"] == sorted(entry["lists"]), name


def test_every_set_used_is_declared(icon_map):
    sets = icon_map["sets"]
    for name, entry in icon_map["concepts"].items():
        for key, icons in entry["icons"].items():
            assert key in sets, (name, key)
            assert 1 <= len(icons) <= 2 and len(set(icons)) == len(icons), (name, key)


def test_sets_are_complete_and_not_reserved(icon_map):
    for key, spec in icon_map["sets"].items():
        assert spec["package"] not in RESERVED_PACKAGES, key
        assert spec["role"] in ("sketch", "photo"), key
        assert spec["names"] in ("iconify", "hexcode"), key
        assert spec["license"] and spec["license_source"] and spec["version"] and spec["family"], key
        if not spec["package"].startswith("@iconify-json/"):
            assert "{}" in spec["path"], key


def test_every_concept_has_enough_art(icon_map, class_lists):
    """A concept of the icon world needs 4 sketch families; one the doodle world added ("since": "v3") is a Quick,
    Draw! category, spelled as there, whose sketches are doodles: it needs only the colour sets."""
    sets = icon_map["sets"]
    quickdraw = (SPLITS / CLASS_FILES["quickdraw"]).read_text(encoding="utf-8").splitlines()
    for name, entry in icon_map["concepts"].items():
        families = {sets[key]["family"] for key in entry["icons"] if sets[key]["role"] == "sketch"}
        photos = [key for key in entry["icons"] if sets[key]["role"] == "photo"]
        if entry.get("since") == "v3":
            assert name in quickdraw and entry["lists"] == ["quickdraw"], name
        else:
            assert set(entry) == {"icons", "lists"}, name
            assert len(families) >= MIN_SKETCH_FAMILIES, (name, sorted(families))
        assert len(photos) >= MIN_PHOTO_SETS, (name, photos)


def test_the_doodle_world_has_at_least_200_quick_draw_concepts(icon_map):
    quickdraw = set((SPLITS / CLASS_FILES["quickdraw"]).read_text(encoding="utf-8").splitlines())
    sets = icon_map["sets"]
    drawn = [name for name, entry in icon_map["concepts"].items() if name in quickdraw
             and sum(sets[key]["role"] == "photo" for key in entry["icons"]) >= MIN_PHOTO_SETS]
    assert len(drawn) >= 200


def test_everyday_subjects_are_present(icon_map):
    present = {norm(name) for name in icon_map["concepts"]}
    missing = [subject for subject in EVERYDAY if norm(subject) not in present]
    assert not missing


def test_one_icon_depicts_one_concept(icon_map):
    owner = {}
    for name, entry in icon_map["concepts"].items():
        for key, icons in entry["icons"].items():
            for icon in icons:
                assert (key, icon) not in owner, (key, icon, owner.get((key, icon)), name)
                owner[(key, icon)] = name


def test_file_is_written_with_sorted_keys(icon_map):
    text = MAP_PATH.read_text(encoding="utf-8")
    assert text == json.dumps(icon_map, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    assert list(icon_map["concepts"]) == sorted(icon_map["concepts"])
