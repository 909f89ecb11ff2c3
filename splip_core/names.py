"""Class names, one set of rules for the whole package: releases spell one class several ways ("hot-air_balloon",
"hot air balloon", "hotairballoon"), folders cannot hold spaces everywhere, prompts and captions want words."""

from __future__ import annotations

import re


def display_name(label: str) -> str:
    """The words of a class, as prompts and captions use them: underscores as spaces, runs of whitespace collapsed
    ("hot-air_balloon" -> "hot-air balloon")."""
    return " ".join(label.replace("_", " ").split())


def class_key(label: str) -> str:
    """The spelling-insensitive form of a class name: lower case, letters and digits only, so "Hot air balloon",
    "hot-air_balloon" and "hotairballoon" find each other."""
    return re.sub(r"[^a-z0-9]", "", label.lower())


def folder_name(label: str) -> str:
    """The folder a class is stored in: its display name with spaces as underscores ("light bulb" -> "light_bulb")."""
    return display_name(label).replace(" ", "_")
