"""Target names as plain strings: which spellings name the same target. No torch, no import
of user code: the runner's parent process dedupes with these before any worker loads a file."""
from __future__ import annotations

import os
from typing import Iterable


def looks_like_path(module_part: str) -> bool:
    """Whether the part of a target string before the colon is a file path, not a module."""
    return module_part.endswith(".py") or os.sep in module_part or "/" in module_part


def dedupe_key(name: str) -> str:
    """One spelling of a target name: a file part is made absolute, so ``src/acts.py:relu``,
    ``./src/acts.py:relu`` and ``/repo/src/acts.py:relu`` are one target."""
    module, colon, attribute = name.rpartition(":")
    if not colon or (len(module) == 1 and module.isalpha()):  # no attribute, or a bare "C:\..."
        module, colon, attribute = name, "", ""
    if looks_like_path(module) or os.path.isdir(module):
        module = os.path.normcase(os.path.abspath(module))
    return module + colon + attribute


def unique_names(names: Iterable[str]) -> list[str]:
    """``names`` without repeats (by :func:`dedupe_key`), in first-seen order: a run given a
    directory and a file in it, or one file spelled twice, audits each target once."""
    return first_seen(names, set())


def first_seen(names: Iterable[str], seen: set[str]) -> list[str]:
    """The ``names`` whose :func:`dedupe_key` is not in ``seen`` yet (adding them): a run
    keeps one ``seen`` set over all its specs, so ``check src src/acts.py`` audits each once."""
    kept = []
    for name in names:
        key = dedupe_key(name)
        if key not in seen:
            seen.add(key)
            kept.append(name)
    return kept
