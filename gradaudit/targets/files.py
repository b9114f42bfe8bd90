"""Which ``.py`` files of a directory ``gradaudit check DIR`` imports.

Only files that mention torch, and none a user expects left alone: ``setup.py``; anything in a
virtualenv (a folder with ``pyvenv.cfg``, ``.venv``, ``venv``) or conda environment (with
``conda-meta``), ``site-packages`` and ``dist-packages``, ``build/``,
``dist/``, ``node_modules``, ``*.egg-info``, hidden folders and ``__pycache__``; and what
``.gitignore`` ignores (asked of ``git check-ignore`` inside a repository, else read from the
``.gitignore`` files of the scanned tree); and what the configuration's ``exclude`` globs name
(:func:`excluding`, set by the run for its duration).
"""
from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import subprocess
from dataclasses import dataclass
from typing import Iterable, Iterator

SKIPPED_FILES = frozenset({"setup.py"})
"""Files never imported by a search: ``setup.py`` runs ``setup()`` when imported."""
SKIPPED_DIRECTORIES = frozenset({"build", "dist", "site-packages", "dist-packages", "node_modules", "venv", "__pycache__"})
"""Folders never searched, besides hidden ones, ``*.egg-info`` and virtualenvs."""


def mentions_torch(path: str) -> bool:
    """Whether a file's text mentions torch; files that do not are never imported."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "torch" in handle.read()
    except OSError:
        return False


def skipped_file(path: str) -> bool:
    """Whether a search leaves the file ``path`` alone whatever its directory: a ``setup.py``,
    or a file an ``exclude`` glob names."""
    return os.path.basename(path) in SKIPPED_FILES or excluded(path)


@dataclass(frozen=True)
class ExcludeGlob:
    """One ``exclude`` glob, relative to ``base`` (the config file's folder): ``**`` spans
    folders, ``*`` and ``?`` stay within one; a glob without ``/`` matches a file or folder
    name at any depth (``conftest.py``); a glob that names a folder excludes all below it."""

    base: str
    pattern: str

    @property
    def regex(self) -> re.Pattern[str]:
        return _glob_regex(self.pattern.strip("/"))

    def matches(self, path: str) -> bool:
        relative = os.path.relpath(os.path.abspath(path), self.base).replace(os.sep, "/")
        if relative == ".." or relative.startswith("../"):
            return False
        parts = relative.split("/")
        regex = self.regex
        if "/" not in self.pattern.strip("/"):
            return any(regex.fullmatch(part) for part in parts)
        return any(regex.fullmatch("/".join(parts[:depth])) for depth in range(1, len(parts) + 1))


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out, index = [], 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
        elif pattern.startswith("**", index):
            out.append(".*")
            index += 2
        elif pattern[index] == "*":
            out.append("[^/]*")
            index += 1
        elif pattern[index] == "?":
            out.append("[^/]")
            index += 1
        else:
            out.append(re.escape(pattern[index]))
            index += 1
    return re.compile("".join(out))


_EXCLUDE: list[ExcludeGlob] = []


@contextlib.contextmanager
def excluding(patterns: Iterable[str], base: str) -> Iterator[None]:
    """Within the block, searches (directories and files given bare) skip what ``patterns``
    name, relative to ``base``; a ``file.py:attr`` named explicitly is still audited."""
    added = [ExcludeGlob(os.path.abspath(base), p) for p in patterns if p.strip("/")]
    _EXCLUDE.extend(added)
    try:
        yield
    finally:
        del _EXCLUDE[len(_EXCLUDE) - len(added):]


def excluded(path: str) -> bool:
    """Whether an ``exclude`` glob in force names ``path`` or a folder above it."""
    return any(glob.matches(path) for glob in _EXCLUDE)


def skipped_directory(path: str) -> bool:
    """Whether a search stays out of the folder ``path``."""
    name = os.path.basename(path)
    return (name.startswith((".", "__")) or name in SKIPPED_DIRECTORIES or name.endswith(".egg-info")
            or os.path.isfile(os.path.join(path, "pyvenv.cfg")) or os.path.isdir(os.path.join(path, "conda-meta")))


@dataclass(frozen=True)
class IgnoreRule:
    """One line of a ``.gitignore`` file, read without git (negation, ``/`` anchoring,
    trailing ``/`` for folders; ``*`` also spans ``/``)."""

    base: str
    pattern: str
    negated: bool
    directories_only: bool
    anchored: bool

    def matches(self, path: str, is_directory: bool) -> bool:
        if self.directories_only and not is_directory:
            return False
        relative = os.path.relpath(path, self.base).replace(os.sep, "/")
        if relative.startswith("../"):
            return False
        if self.anchored:
            return fnmatch.fnmatchcase(relative, self.pattern)
        return fnmatch.fnmatchcase(relative.rsplit("/", 1)[-1], self.pattern)


def read_gitignore(directory: str) -> list[IgnoreRule]:
    """The rules of ``directory/.gitignore`` (none if there is no such file)."""
    try:
        with open(os.path.join(directory, ".gitignore"), encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return []
    rules = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        line = line[1:] if negated else line
        directories_only = line.endswith("/")
        line = line.rstrip("/")
        anchored = "/" in line
        if line:
            rules.append(IgnoreRule(directory, line.lstrip("/"), negated, directories_only, anchored))
    return rules


def ignored_by_rules(path: str, is_directory: bool, rules: list[IgnoreRule]) -> bool:
    """Whether the last of ``rules`` that matches ``path`` ignores it."""
    ignored = False
    for rule in rules:
        if rule.matches(path, is_directory):
            ignored = not rule.negated
    return ignored


def ignored_by_git(directory: str, paths: list[str]) -> set[str] | None:
    """Which of ``paths`` (relative to ``directory``) git ignores; None when git is missing or
    ``directory`` is not in a repository (then the ``.gitignore`` files are read instead)."""
    if not paths:
        return set()
    try:
        done = subprocess.run(["git", "check-ignore", "--stdin", "-z"], cwd=directory,
                              input="\0".join([".", *paths]) + "\0",
                              capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode not in (0, 1):
        return None
    ignored = {path for path in done.stdout.split("\0") if path}
    return set() if "." in ignored else ignored  # a folder named explicitly is searched


def python_files(directory: str) -> list[str]:
    """The ``.py`` files under ``directory`` a search imports, in sorted walk order."""
    directory = os.path.normpath(directory)
    found: list[str] = []
    rules_in: dict[str, list[IgnoreRule]] = {}
    for root, dirs, files in os.walk(directory):
        rules_in[root] = rules_in.get(os.path.dirname(root), []) + read_gitignore(root)
        dirs[:] = sorted(name for name in dirs if not skipped_directory(os.path.join(root, name))
                         and not excluded(os.path.join(root, name)))
        found.extend(os.path.join(root, name) for name in sorted(files)
                     if name.endswith(".py") and not skipped_file(os.path.join(root, name)))
    relative = [os.path.relpath(path, directory) for path in found]
    ignored = ignored_by_git(directory, relative)
    if ignored is None:
        kept = [path for path in found if not _ignored_without_git(directory, path, rules_in)]
    else:
        kept = [path for path, rel in zip(found, relative) if not _under(rel, ignored)]
    return [path for path in kept if mentions_torch(path)]


def _under(relative: str, ignored: set[str]) -> bool:
    """Whether the file ``relative`` or one of its folders is in ``ignored``."""
    parts = relative.split(os.sep)
    return any(os.sep.join(parts[:depth]) in ignored for depth in range(1, len(parts) + 1))


def _ignored_without_git(directory: str, path: str, rules_in: dict[str, list[IgnoreRule]]) -> bool:
    """Whether the ``.gitignore`` rules ignore ``path`` or one of its folders below ``directory``."""
    chain = [path]
    while os.path.dirname(chain[-1]) != directory and os.path.dirname(chain[-1]) in rules_in:
        chain.append(os.path.dirname(chain[-1]))
    return any(ignored_by_rules(item, item != path, rules_in.get(os.path.dirname(item), []))
               for item in chain)
