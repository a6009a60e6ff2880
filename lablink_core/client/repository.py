"""Cloning the lab's repository onto the desktop before the VM is offered to anyone.

A failure is not fatal: the VM still works, and the reason goes into its status message.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

CLONE_TIMEOUT: Final = 900.0
# Remote forms git understands without running anything: no ext:: and no option-like names.
_URL_RE: Final = re.compile(r"(?:https?|ssh|git|file)://\S+|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:\S+")
_NAME_RE: Final = re.compile(r"[A-Za-z0-9._-]+")
# The original LabLink's Terraform could pass the text "None" for "no repository".
_UNSET: Final = frozenset({"", "none", "null"})


def configured_repository(value: str | None) -> str | None:
    text = (value or "").strip()
    return None if text.lower() in _UNSET else text


def clone_target(url: str) -> str:
    """The folder name git would pick: the last path part, without ``.git``."""
    if not _URL_RE.fullmatch(url):
        raise ValueError(f"not a repository URL git can clone safely: {url[:80]!r}")
    name = re.split(r"[/:]", url.rstrip("/"))[-1]
    name = name[: -len(".git")] if name.endswith(".git") else name
    if not _NAME_RE.fullmatch(name) or name in (".", ".."):
        raise ValueError(f"cannot tell the folder name for {url[:80]!r}")
    return name


def _one_line(text: str, limit: int = 300) -> str:
    return " ".join(text.split())[-limit:]


def clone_repository(
    url: str,
    desktop: Path,
    stop: threading.Event,
    *,
    environ: Mapping[str, str] | None = None,
    run_as: Sequence[str] = (),
    home: str | None = None,
) -> str | None:
    """Clone ``url`` into ``desktop/<name>``; None when done (or already there), else why not.

    ``run_as`` prefixes git's command line to run it as the desktop account (which then
    owns the clone), and ``home`` is that account's home."""
    try:
        target = desktop / clone_target(url)
    except ValueError as error:
        return str(error)
    if target.is_dir() and any(target.iterdir()):
        log.info("%s is already on the desktop", target.name)
        return None
    source = environ if environ is not None else os.environ
    env = {name: source[name] for name in ("PATH", "HOME", "LANG") if name in source}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="/bin/false")
    if home is not None:
        env["HOME"] = home
    log.info("cloning %s into %s", url, target)
    with tempfile.TemporaryFile() as output:
        try:
            process = subprocess.Popen(
                [*run_as, "git", "clone", "--", url, str(target)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        except OSError as error:
            return f"could not run git to clone {url}: {error.strerror}"
        code = _wait(process, stop)
        output.seek(0)
        detail = _one_line(output.read().decode(errors="replace"))
    if code == 0:
        return None
    why = "stopped or timed out" if code is None else f"git exited {code}: {detail}"
    return f"could not clone {url} ({why})"


def _wait(process: subprocess.Popen[bytes], stop: threading.Event) -> int | None:
    """The exit status, or None after killing git on stop or timeout."""
    deadline = time.monotonic() + CLONE_TIMEOUT
    while not stop.wait(0.1):
        code = process.poll()
        if code is not None:
            return code
        if time.monotonic() > deadline:
            break
    process.kill()
    process.wait()
    return None
