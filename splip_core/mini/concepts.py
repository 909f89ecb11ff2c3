"""Which concepts the world has, which are seen / validation / unseen, and which drawers train or test.

Concepts are the icon map's (names from the Sketchy, TU-Berlin and QuickDraw category lists) that enough sketch
families and colour sets draw; in a doodle world (v3) they are Quick, Draw! categories, spelled as there, that
enough colour sets draw (the doodles are the sketches, any sketch family a second domain). The split is a seeded
shuffle stratified over "everyday" subjects (what visitors draw first) and the rest, so the unseen side holds
everyday subjects too and a visitor can try zero-shot by drawing. Validation concepts are seen-side concepts
withheld from prompt training: the recipe and its stopping point are chosen on them, never on the unseen test.
Drawers are whole design families; the test families draw only test sketches, as Sketchy's test sketches come from
other people.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .sources import IconMap

EVERYDAY = (
    "house", "tree", "sun", "moon", "star", "cloud", "flower", "cat", "dog", "fish", "bird", "butterfly", "car",
    "bicycle", "airplane", "sailboat", "train", "apple", "banana", "cup", "clock", "key", "umbrella", "heart",
    "book", "chair", "guitar", "hat", "eyeglasses", "scissors", "pizza", "mushroom", "snowman", "cactus", "tent",
    "envelope", "light bulb", "bell", "camera", "telephone",
)


@dataclass(frozen=True)
class Split:
    """Concept and drawer split of the world."""

    seen: tuple[str, ...]
    val: tuple[str, ...]
    unseen: tuple[str, ...]
    train_families: tuple[str, ...]
    test_families: tuple[str, ...]


def eligible(icon_map: IconMap, min_sketch_families: int = 4, min_photo_sets: int = 3,
             doodle_categories: list[str] | None = None) -> list[str]:
    """Concepts drawn by at least `min_sketch_families` sketch families and `min_photo_sets` colour sets. With
    `doodle_categories` (a doodle world) only those categories, and every concept of the map; without, the concepts
    the map added for the doodle world ("since": "v3") are left out, so the icon world keeps its split."""
    out = []
    for name, icons in icon_map.concepts.items():
        if doodle_categories is None and icon_map.since.get(name) == "v3":
            continue
        if doodle_categories is not None and name not in doodle_categories:
            continue
        photos = [k for k in icons if icon_map.sets[k].role == "photo"]
        if len(icon_map.families(name)) >= min_sketch_families and len(photos) >= min_photo_sets:
            out.append(name)
    return out


def split_concepts(names: list[str], seed: int, unseen_fraction: float, val_fraction: float,
                   can_test: set[str] | None = None) -> tuple[list[str], list[str], list[str]]:
    """(seen, val, unseen), each sorted: per stratum (everyday / other) a seeded shuffle puts
    round(unseen_fraction * n) in unseen (only concepts in `can_test`) and round(val_fraction * n) in val."""
    rng = random.Random(seed)
    can_test = set(names) if can_test is None else can_test
    seen, val, unseen = [], [], []
    everyday = set(EVERYDAY)
    for stratum in (sorted(n for n in names if n in everyday), sorted(n for n in names if n not in everyday)):
        order = list(stratum)
        rng.shuffle(order)
        n_unseen, n_val = round(unseen_fraction * len(order)), round(val_fraction * len(order))
        testable = [n for n in order if n in can_test]
        picked = testable[:n_unseen]
        unseen += picked
        rest = [n for n in order if n not in picked]
        val += rest[:n_val]
        seen += rest[n_val:]
    return sorted(seen), sorted(val), sorted(unseen)


def make_split(icon_map: IconMap, seed: int, test_families: tuple[str, ...], unseen_fraction: float = 0.25,
               val_fraction: float = 0.12, min_sketch_families: int = 4, min_photo_sets: int = 3,
               doodle_categories: list[str] | None = None) -> Split:
    """The world's split: eligible concepts, drawers divided into train and test families."""
    families = sorted({s.family for s in icon_map.sets.values() if s.role == "sketch"})
    missing = sorted(set(test_families) - set(families))
    if missing:
        raise ValueError(f"test families {missing} are not sketch families of the icon map ({families})")
    names = eligible(icon_map, min_sketch_families, min_photo_sets, doodle_categories)
    # unseen candidates: drawn by a test family (they need test sketches) and by a train family; in a doodle world
    # every concept has test doodles
    can_test = set(names) if doodle_categories is not None else {
        n for n in names if icon_map.families(n) & set(test_families) and icon_map.families(n) - set(test_families)}
    seen, val, unseen = split_concepts(names, seed, unseen_fraction, val_fraction, can_test)
    train = tuple(f for f in families if f not in test_families)
    return Split(tuple(seen), tuple(val), tuple(unseen), train, tuple(sorted(test_families)))
