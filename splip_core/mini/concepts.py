"""Which emoji become retrieval concepts, and which concepts are seen (prompt training) or unseen (test only).

Selection is rule based and deterministic: object-like Unicode groups only (no faces, people, flags, symbols,
keycaps), near-duplicates merged into one concept ("dog face" + "dog" + "guide dog" -> "dog"; colour variants
like "red apple" + "green apple" -> "apple"), and then a greedy pass that keeps a concept only if its name shares
no content word with a concept already kept, so no two concepts are named (and mostly drawn) alike. The split
into seen and unseen concepts is a seeded shuffle, stratified over the Unicode groups.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from dataclasses import dataclass

GROUPS = ("animals-nature", "food-drink", "travel-places", "activities", "objects")
REQUIRED_STYLES = frozenset({"om_line", "om_color", "f3d", "fcolor", "fflat", "tw"})

# Not objects, or not one drawable thing: clock faces and moon phases (near-identical discs), card suits,
# arrows/slashes (symbols), charts, e-mail, abstract or scene-like ones (fog, sparkles, performing arts) and
# faces of non-animals are dropped (see `base_name`).
_EXCLUDE = re.compile(
    r"o'clock|-thirty|waxing|waning|quarter moon|^new moon|^full moon|\bsuit$|\barrow\b|\bslash\b|\bchart\b"
    r"|^e-mail$|^muted speaker$|^pig nose$|^tanabata|^mahjong|^flower playing cards$|^ballot box"
    r"|^fog|^sparkles$|^high voltage$|^performing arts$|^level slider$|^control knobs$|^paw prints$|^wedding$"
    r"|^construction$|^x-ray$|^label$|^link$|^cooking$"
)
# Near-duplicate code points merged into one concept (the concept's name on the right).
ALIASES = {
    "red apple": "apple", "green apple": "apple",
    "closed book": "book", "open book": "book", "green book": "book", "blue book": "book",
    "orange book": "book", "books": "book",
    "two-hump camel": "camel", "spouting whale": "whale", "black cat": "cat", "ram": "sheep", "ewe": "sheep",
    "guide dog": "dog", "service dog": "dog",
    "baby chick": "chick", "front-facing baby chick": "chick", "hatching chick": "chick",
    "hourglass done": "hourglass", "hourglass not done": "hourglass",
    "magnifying glass tilted left": "magnifying glass", "magnifying glass tilted right": "magnifying glass",
    "crescent moon": "moon",
    "speaker low volume": "speaker", "speaker medium volume": "speaker", "speaker high volume": "speaker",
    "locked": "padlock", "unlocked": "padlock",
    "closed mailbox with raised flag": "mailbox", "closed mailbox with lowered flag": "mailbox",
    "open mailbox with raised flag": "mailbox", "open mailbox with lowered flag": "mailbox",
    "globe showing europe-africa": "globe", "globe showing americas": "globe",
    "globe showing asia-australia": "globe", "incoming envelope": "envelope",
    "horizontal traffic light": "traffic light", "vertical traffic light": "traffic light",
    "snowman without snow": "snowman", "tram car": "tram", "high-speed train": "bullet train",
    "musical notes": "musical note", "softball": "baseball", "sunglasses": "glasses", "loudspeaker": "megaphone",
    "rooster": "chicken", "notebook with decorative cover": "notebook", "sparkler": "fireworks",
}
_STOPWORDS = frozenset({"a", "an", "the", "of", "with", "and", "in", "on", "at", "for", "to", "without", "behind",
                        "over", "up", "showing", "not"})


@dataclass(frozen=True)
class Emoji:
    """One OpenMoji code point: its hexcode, annotation, Unicode group/subgroup and tags."""

    hexcode: str
    annotation: str
    group: str
    subgroup: str
    tags: tuple[str, ...]
    order: int

    @property
    def instance(self) -> str:
        """Instance id used in file names (FG pairing): "om_" + lower-case hexcode with "_" for "-"."""
        return "om_" + self.hexcode.lower().replace("-", "_")


@dataclass(frozen=True)
class Concept:
    """A retrieval class: a name and the code points (instances) that depict it."""

    name: str
    group: str
    members: tuple[Emoji, ...]

    @property
    def folder(self) -> str:
        """Folder name on disk: the name with spaces as underscores."""
        return self.name.replace(" ", "_")


def content_words(name: str) -> frozenset[str]:
    """Words that carry meaning, lightly singularised ("books" -> "book"), possessives and stopwords dropped."""
    words = set()
    for w in re.split(r"[\s\-]+", name.lower().replace("'s", "")):
        if w and w not in _STOPWORDS:
            words.add(w[:-1] if w.endswith("s") and not w.endswith("ss") and len(w) > 3 else w)
    return frozenset(words)


def base_name(annotation: str, group: str) -> str | None:
    """Concept name of a code point, or None when it is excluded (a face, a symbol-like or dial-like emoji)."""
    name = annotation.lower().replace("\u2019", "'").strip()
    if _EXCLUDE.search(name):
        return None
    name = re.sub(r"^oncoming ", "", name)
    if group == "animals-nature":
        name = re.sub(r" face$", "", name)  # "dog face" is the dog's head: the same concept as "dog"
    if re.search(r"\bface\b", name):
        return None
    return ALIASES.get(name, name)


def select_concepts(table: list[dict], available, max_concepts: int = 160) -> list[Concept]:
    """Deterministic concept list from openmoji.json rows.

    `available(hexcode)` gives the styles a code point exists in; only code points with every style in
    `REQUIRED_STYLES` qualify. Merged concepts are ranked (more members, fewer words, Unicode order first),
    kept greedily when no content word clashes, then taken round-robin over the Unicode subgroups (mammals,
    birds, fruit, tools, ...) up to `max_concepts`, so that the kept concepts look as different as possible.
    """
    merged: dict[str, list[Emoji]] = defaultdict(list)
    for row in table:
        if row["group"] not in GROUPS or row.get("skintone"):
            continue
        name = base_name(row["annotation"], row["group"])
        if name is None or not available(row["hexcode"]) >= REQUIRED_STYLES:
            continue
        tags = tuple(t.strip() for t in f"{row.get('tags', '')},{row.get('openmoji_tags', '')}".split(",")
                     if t.strip())
        merged[name].append(Emoji(row["hexcode"], row["annotation"], row["group"], row["subgroups"], tags,
                                  int(row["order"])))
    ranked = sorted(merged.items(), key=lambda kv: (-len(kv[1]), len(content_words(kv[0])), kv[1][0].order))
    used: set[str] = set()
    by_subgroup: dict[str, list[Concept]] = defaultdict(list)
    for name, members in ranked:
        words = content_words(name)
        if words & used:
            continue
        used |= words
        members = sorted(members, key=lambda e: e.order)
        by_subgroup[members[0].subgroup].append(Concept(name, members[0].group, tuple(members)))
    picked: list[Concept] = []
    queues = sorted(by_subgroup.values(), key=lambda q: min(m.order for c in q for m in c.members))
    while len(picked) < max_concepts and any(queues):
        for queue in queues:
            if queue and len(picked) < max_concepts:
                picked.append(queue.pop(0))
    return sorted(picked, key=lambda c: c.members[0].order)


def split_concepts(concepts: list[Concept], seed: int, unseen_fraction: float = 0.2) -> tuple[list[str], list[str]]:
    """(seen, unseen) concept names: per Unicode group, a seeded shuffle puts round(fraction * n) in unseen."""
    rng = random.Random(seed)
    unseen: set[str] = set()
    for group in GROUPS:
        names = sorted(c.name for c in concepts if c.group == group)
        rng.shuffle(names)
        unseen.update(names[: round(unseen_fraction * len(names))])
    seen = [c.name for c in concepts if c.name not in unseen]
    return seen, [c.name for c in concepts if c.name in unseen]


def held_out_members(concept: Concept, seed: int) -> tuple[Emoji, ...]:
    """The members of a seen concept kept for testing: one seeded pick when it has two or more, else none."""
    if len(concept.members) < 2:
        return ()
    rng = random.Random(f"{seed}:{concept.name}")
    return (concept.members[rng.randrange(len(concept.members))],)
