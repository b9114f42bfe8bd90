"""The pre-commit hook, run for real by pre-commit in throwaway git repositories, in both forms
of README.md: the local one (`language: system`) and the remote one (`.pre-commit-hooks.yaml`,
`language: python`), through `pre-commit try-repo` and through `git commit` with the hook
installed. Each blocks a commit with a failing activation, passes a clean one, and passes a
commit that only touches files without activations.

The remote form builds its virtualenv offline: `VIRTUALENV_SYSTEM_SITE_PACKAGES=1` lets it see
the torch (and click, tabulate, numpy, setuptools) installed here, `PIP_NO_INDEX=1` keeps pip
off the network, and `PIP_NO_BUILD_ISOLATION=0` (pip's spelling of --no-build-isolation)
builds gradaudit with the installed setuptools. The README's `additional_dependencies`
(an extra index and a `+cpu` torch pin) are used as written: with no index, pip finds the pin
already satisfied.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT

yaml = pytest.importorskip("yaml")  # pre-commit depends on PyYAML

DEFECTIVE = textwrap.dedent('''
    import torch
    import gradaudit


    @gradaudit.activation
    def sqrt_relu(x):
        return torch.where(x > 0, torch.sqrt(x), torch.zeros_like(x))  # NaN gradient for x <= 0
''')

CORRECT = textwrap.dedent('''
    import torch
    import gradaudit


    @gradaudit.activation
    def sqrt_relu(x):
        positive = x > 0
        safe = torch.where(positive, x, torch.ones_like(x))
        return torch.where(positive, torch.sqrt(safe), torch.zeros_like(x))
''')

WARNS = textwrap.dedent('''
    import torch
    import gradaudit


    @gradaudit.activation
    def masked_relu(x):
        return x * (x > 0).float()  # -0.0 for every negative x: GA203 warn
''')

UNRELATED = "def helper():\n    return 1\n"


def _torch_pin() -> str:
    import torch

    return f"torch=={torch.__version__}"


README_REMOTE_DEPENDENCIES = ["--extra-index-url=https://download.pytorch.org/whl/cpu", _torch_pin()]
"""The README's remote form pins a CPU torch this way (``torch==2.13.0+cpu`` here)."""


def manifest_hook() -> dict:
    with open(os.path.join(ROOT, ".pre-commit-hooks.yaml"), encoding="utf-8") as handle:
        (hook,) = yaml.safe_load(handle)
    return hook


def _pre_commit() -> str:
    found = shutil.which("pre-commit")
    if found is None:
        pytest.skip("pre-commit is not installed (it is a dev dependency)")
    return found


def test_manifest_declares_the_gradaudit_hook():
    hook = manifest_hook()
    assert hook["id"] == "gradaudit" and hook["entry"] == "gradaudit check"
    assert hook["language"] == "python" and hook["types"] == ["python"] and hook["require_serial"] is True
    assert hook["verbose"] is True  # pre-commit hides a passing hook's output: its warnings too
    assert "additional_dependencies" not in hook  # the user pins torch (a CPU one) in their config
    completed = subprocess.run([_pre_commit(), "validate-manifest", os.path.join(ROOT, ".pre-commit-hooks.yaml")],
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_the_package_builds_without_a_compiler():
    """The remote form pip-installs this repository: pure Python, no extension to compile."""
    import glob

    sources = [p for ext in ("c", "cc", "cpp", "cu", "pyx") for p in glob.glob(os.path.join(ROOT, "gradaudit", "**", f"*.{ext}"), recursive=True)]
    assert sources == []
    with open(os.path.join(ROOT, "setup.cfg"), encoding="utf-8") as handle:
        assert "ext_modules" not in handle.read()


class Sandbox:
    """A throwaway git repository with pre-commit's cache, git identity and pip offline."""

    def __init__(self, tmp_path) -> None:
        self.pre_commit = _pre_commit()
        self.repo = tmp_path / "repo"
        self.repo.mkdir(parents=True)
        environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the hook's own gradaudit
        self.env = dict(environ, PRE_COMMIT_HOME=str(tmp_path / "cache"), GIT_CONFIG_NOSYSTEM="1", HOME=str(tmp_path),
                        GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="t",
                        GIT_COMMITTER_EMAIL="t@example.com", VIRTUALENV_SYSTEM_SITE_PACKAGES="1",
                        PIP_NO_INDEX="1", PIP_NO_BUILD_ISOLATION="0", PIP_DISABLE_PIP_VERSION_CHECK="1")
        self.git("init", "-q")
        (self.repo / "pyproject.toml").write_text('[tool.gradaudit]\ndtypes = ["float64", "float32"]\n')

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=self.repo, env=self.env, check=check, capture_output=True,
                              text=True, timeout=300)

    def configure(self, hook: dict, repo: str = "local", rev: str | None = None) -> None:
        entry = {"repo": repo, "hooks": [hook]}
        if rev is not None:
            entry["rev"] = rev
        (self.repo / ".pre-commit-config.yaml").write_text(yaml.safe_dump({"repos": [entry]}))
        self.git("add", ".pre-commit-config.yaml", "pyproject.toml")
        self.git("commit", "-q", "--no-verify", "-m", "config")
        done = subprocess.run([self.pre_commit, "install"], cwd=self.repo, env=self.env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr

    def commit(self, files: dict[str, str]) -> subprocess.CompletedProcess:
        """Write ``files``, stage them and commit with the hook; the commit's process."""
        for name, text in files.items():
            (self.repo / name).write_text(text)
        self.git("add", *files)
        return self.git("commit", "-m", "change", check=False)


def _assert_blocks_failing_passes_clean_and_unrelated(box: Sandbox) -> None:
    blocked = box.commit({"acts.py": DEFECTIVE})
    assert blocked.returncode != 0, blocked.stdout + blocked.stderr
    assert "GA202" in blocked.stdout + blocked.stderr
    assert box.git("rev-list", "--count", "HEAD").stdout.strip() == "1"  # only the config commit
    passed = box.commit({"acts.py": CORRECT})
    assert passed.returncode == 0, passed.stdout + passed.stderr
    unrelated = box.commit({"util.py": UNRELATED, "notes.py": "import os\n"})
    assert unrelated.returncode == 0, unrelated.stdout + unrelated.stderr
    assert box.git("rev-list", "--count", "HEAD").stdout.strip() == "3"


def local_hook(**extra) -> dict:
    """The README's local form, run with this interpreter."""
    return dict(id="gradaudit", name="gradaudit", entry=f"{shlex.quote(sys.executable)} -m gradaudit check",
                language="system", types=["python"], require_serial=True, verbose=True, **extra)


@pytest.mark.slow
def test_local_form_blocks_a_failing_commit_and_passes_clean_and_unrelated_ones(tmp_path):
    box = Sandbox(tmp_path)
    box.configure(local_hook())
    _assert_blocks_failing_passes_clean_and_unrelated(box)


@pytest.mark.slow
def test_local_form_shows_warnings_and_strict_blocks_them(tmp_path):
    box = Sandbox(tmp_path)
    box.configure(local_hook())
    shown = box.commit({"acts.py": WARNS})
    assert shown.returncode == 0 and "GA203" in shown.stdout + shown.stderr  # verbose: seen, not hidden
    strict = Sandbox(tmp_path / "strict")
    strict.configure(local_hook(args=["--strict"]))
    blocked = strict.commit({"acts.py": WARNS})
    assert blocked.returncode != 0 and "GA203" in blocked.stdout + blocked.stderr


def _snapshot_with_tag(tmp_path) -> str:
    """A clone of this repository's HEAD with the release tag ``v<version>`` that the README's
    ``rev:`` names (made on release; here on the snapshot, so no tag is pushed anywhere)."""
    from gradaudit.model.version import __version__

    snapshot = tmp_path / "gradaudit-remote"
    subprocess.run(["git", "clone", "-q", "--no-local", ROOT, str(snapshot)], check=True, capture_output=True,
                   timeout=120)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "tag", "-f",
                    f"v{__version__}"], cwd=snapshot, check=True, capture_output=True, timeout=60)
    return str(snapshot)


@pytest.mark.slow
def test_remote_form_as_written_blocks_a_failing_commit_and_passes_clean_and_unrelated_ones(tmp_path):
    from gradaudit.model.version import __version__

    box = Sandbox(tmp_path)
    box.configure({"id": "gradaudit", "additional_dependencies": README_REMOTE_DEPENDENCIES},
                  repo=_snapshot_with_tag(tmp_path), rev=f"v{__version__}")
    _assert_blocks_failing_passes_clean_and_unrelated(box)


@pytest.mark.slow
def test_remote_form_through_try_repo(tmp_path):
    box = Sandbox(tmp_path)
    (box.repo / "acts.py").write_text(DEFECTIVE)
    (box.repo / "util.py").write_text(UNRELATED)
    box.git("add", "-A")

    def try_repo(*files: str) -> subprocess.CompletedProcess:
        return subprocess.run([box.pre_commit, "try-repo", ROOT, "gradaudit", "--ref", "HEAD", "--files", *files],
                              cwd=box.repo, env=box.env, capture_output=True, text=True, timeout=300)

    failed = try_repo("acts.py", "util.py")
    assert failed.returncode == 1 and "GA202" in failed.stdout, failed.stdout + failed.stderr
    assert try_repo("util.py").returncode == 0
