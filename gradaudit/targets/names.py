"""Target names as plain strings: which spellings name the same target. No torch, no import
of user code: the runner's parent process dedupes with these before any worker loads a file."""
from __future__ import annotations

import os
from typing import Iterable

from .spec import looks_like_path, split_spec


def dedupe_key(name: str) -> str:
    """One spelling of a target name: a file part is made absolute, so ``src/acts.py:relu``,
    ``./src/acts.py:relu`` and ``/repo/src/acts.py:relu`` are one target."""
    module, attribute = split_spec(name)
    if looks_like_path(module) or os.path.isdir(module):
        module = os.path.normcase(os.path.abspath(module))
    return module + (":" + attribute if attribute else "")


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
