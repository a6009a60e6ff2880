"""Runs Terraform for a fleet: copies a config into a state folder, applies and destroys it.

Every JSON event terraform prints is streamed to the caller as it arrives. Variables reach
terraform only through its environment (TF_VAR_<name>), never through argv or a file, and
known secret values are redacted from everything this module logs or reports.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from lablink_core.fleet.terraform_events import (
    Redactor,
    TerraformCancelled,
    TerraformError,
    TerraformEvent,
    TerraformProgress,
    error_message,
    parse_line,
)
from lablink_core.fleet.terraform_process import CommandRunner, SubprocessRunner

__all__ = [
    "CommandRunner",
    "EventCallback",
    "SubprocessRunner",
    "TerraformCancelled",
    "TerraformError",
    "TerraformEvent",
    "TerraformProgress",
    "TerraformRunner",
]

log = logging.getLogger(__name__)

EventCallback = Callable[[TerraformEvent, TerraformProgress], None]
CONFIG_PATTERNS = ("*.tf", "*.tftpl")
CONFIG_DIGEST_FILE = ".lablink-config.sha256"
_BASE_ENV_KEYS = ("PATH", "HOME", "TMPDIR")
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_SECRET_NAME = re.compile(r"password|secret|token|credential|private", re.IGNORECASE)


class TerraformRunner:
    """One Terraform config (`source_dir`) and its state (`work_dir`); one command at a time."""

    def __init__(
        self,
        *,
        source_dir: Path,
        work_dir: Path,
        env: Mapping[str, str],
        plugin_dir: Path | None = None,
        terraform_bin: str = "terraform",
        parallelism: int = 50,
        runner: CommandRunner | None = None,
    ) -> None:
        self.source_dir = Path(source_dir).resolve()
        self.work_dir = Path(work_dir).resolve()
        if self.work_dir.is_relative_to(self.source_dir):
            raise ValueError(f"work_dir {self.work_dir} must be outside {self.source_dir}")
        if parallelism < 1:
            raise ValueError("parallelism must be at least 1")
        self._env = dict(env)
        self.plugin_dir = plugin_dir
        self.terraform_bin = terraform_bin
        self.parallelism = parallelism
        self._runner: CommandRunner = runner if runner is not None else SubprocessRunner()
        self._busy = threading.RLock()
        self._cancelled = threading.Event()
        self._depth = 0

    def set_env(self, env: Mapping[str, str]) -> None:
        """Replace the environment the next command gets (e.g. rotated AWS keys)."""
        with self._busy:
            self._env = dict(env)

    def ensure_init(self) -> None:
        """Copy the config into work_dir; run `terraform init` if never run or config changed."""
        with self._exclusive():
            digest = self._sync_config()
            marker = self.work_dir / CONFIG_DIGEST_FILE
            initialised = (self.work_dir / ".terraform").is_dir()
            if initialised and marker.is_file() and marker.read_text() == digest:
                return
            argv = [self.terraform_bin, "init", "-input=false", "-no-color"]
            if self.plugin_dir is not None:
                argv.append(f"-plugin-dir={self.plugin_dir}")
            self._run_checked(argv, {}, None)
            marker.write_text(digest)

    def apply(self, variables: Mapping[str, object], on_event: EventCallback) -> dict[str, object]:
        """Create or update the fleet to match `variables`; returns terraform's outputs."""
        with self._exclusive():
            self.ensure_init()
            self._run_checked(self._command("apply"), variables, on_event)
            return self._read_outputs()

    def destroy(self, variables: Mapping[str, object], on_event: EventCallback) -> None:
        """Destroy every resource in the state."""
        with self._exclusive():
            self.ensure_init()
            self._run_checked(self._command("destroy"), variables, on_event)

    def outputs(self) -> dict[str, object]:
        """The current outputs, name -> value; empty when nothing was applied."""
        with self._exclusive():
            if not (self.work_dir / "terraform.tfstate").is_file():
                return {}
            self.ensure_init()
            return self._read_outputs()

    def cancel(self) -> None:
        """Interrupt a running terraform (SIGINT): it stops cleanly and keeps its state."""
        self._cancelled.set()
        self._runner.cancel()

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One operation at a time; a cancel() made before an operation does not reach it."""
        if not self._busy.acquire(blocking=False):
            raise TerraformError(f"another terraform command is running in {self.work_dir}")
        try:
            if self._depth == 0:
                self._cancelled.clear()
            self._depth += 1
            yield
        finally:
            self._depth -= 1
            self._busy.release()

    def _command(self, verb: str) -> list[str]:
        return [
            self.terraform_bin,
            verb,
            "-json",
            "-auto-approve",
            "-input=false",
            f"-parallelism={self.parallelism}",
        ]

    def _sync_config(self) -> str:
        """Mirror the config files of source_dir into work_dir; returns their digest."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        sources = sorted({p for pattern in CONFIG_PATTERNS for p in self.source_dir.glob(pattern)})
        if not any(p.suffix == ".tf" for p in sources):
            raise TerraformError(f"no Terraform files in {self.source_dir}")
        digest = hashlib.sha256()
        names = set()
        for source in sources:
            content = source.read_bytes()
            digest.update(source.name.encode() + b"\0" + content + b"\0")
            names.add(source.name)
            target = self.work_dir / source.name
            if not target.is_file() or target.read_bytes() != content:
                target.write_bytes(content)
        for pattern in CONFIG_PATTERNS:
            for stale in self.work_dir.glob(pattern):
                if stale.name not in names:
                    stale.unlink()
        return digest.hexdigest()

    def _environment(self, variables: Mapping[str, object]) -> dict[str, str]:
        env = {key: os.environ[key] for key in _BASE_ENV_KEYS if key in os.environ}
        env.setdefault("PATH", os.defpath)
        env.update(self._env)
        env.update(TF_IN_AUTOMATION="1", TF_INPUT="0", CHECKPOINT_DISABLE="1")
        for name, value in variables.items():
            if not _VARIABLE_NAME.match(name):
                raise ValueError(f"invalid Terraform variable name: {name!r}")
            if value is not None:
                env[f"TF_VAR_{name}"] = _encode_variable(value)
        return env

    def _redactor(self, variables: Mapping[str, object]) -> Redactor:
        secrets = [v for k, v in self._env.items() if _SECRET_NAME.search(k)]
        for name, value in variables.items():
            if _SECRET_NAME.search(name):
                secrets.extend(_leaf_strings(value))
        return Redactor(secrets)

    def _run_checked(
        self,
        argv: Sequence[str],
        variables: Mapping[str, object],
        on_event: EventCallback | None,
    ) -> None:
        """Run one terraform command, streaming events; raise TerraformError on failure."""
        collector = _Collector(self._redactor(variables), on_event)
        if self._cancelled.is_set():
            raise TerraformCancelled(f"terraform {argv[1]} was cancelled before it started")
        started = time.monotonic()
        log.info("terraform %s in %s (variables: %s)", argv[1], self.work_dir, sorted(variables))
        code = self._runner.stream(
            argv, cwd=self.work_dir, env=self._environment(variables), on_line=collector
        )
        log.info("terraform %s exited %s after %.1f s", argv[1], code, time.monotonic() - started)
        text = "".join(collector.lines)
        if self._cancelled.is_set():
            raise TerraformCancelled(
                f"terraform {argv[1]} was cancelled", log=text, returncode=code
            )
        if code != 0:
            raise TerraformError(
                error_message(collector.diagnostics, collector.lines),
                log=text,
                diagnostics=collector.diagnostics,
                returncode=code,
            )

    def _read_outputs(self) -> dict[str, object]:
        """`terraform output -json`, as name -> value."""
        chunks: list[str] = []
        argv = [self.terraform_bin, "output", "-json", "-no-color"]
        code = self._runner.stream(
            argv, cwd=self.work_dir, env=self._environment({}), on_line=chunks.append
        )
        text = "".join(chunks)
        start = text.find("{")
        try:
            raw, _ = json.JSONDecoder().raw_decode(text, start) if start >= 0 else ({}, 0)
        except ValueError:
            raw = None
        if code != 0 or not isinstance(raw, dict):
            redact = self._redactor({})
            raise TerraformError(
                f"terraform output failed: {redact(text.strip()[-500:])}",
                log=redact(text),
                returncode=code,
            )
        return {name: entry.get("value") for name, entry in raw.items()}


class _Collector:
    """The line handler of one command: redacts, parses, counts, keeps the log, notifies."""

    def __init__(self, redact: Redactor, on_event: EventCallback | None) -> None:
        self.redact = redact
        self.on_event = on_event
        self.progress = TerraformProgress()
        self.diagnostics: list[TerraformEvent] = []
        self.lines: list[str] = []
        self.callback_failed = False

    def __call__(self, raw: str) -> None:
        line = self.redact(raw)
        self.lines.append(line)
        event = parse_line(line)
        if event is None:
            return
        if event.kind == "diagnostic":
            self.diagnostics.append(event)
        self.progress.update(event)
        if self.on_event is None:
            return
        try:
            self.on_event(event, self.progress)
        except Exception:  # a broken callback must not abort terraform half-way
            if not self.callback_failed:
                log.exception("terraform event callback failed (on a %s event)", event.kind)
            self.callback_failed = True


def _encode_variable(value: object) -> str:
    """A TF_VAR_ value: strings as they are, everything else as JSON (valid HCL)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, default=_json_default)


def _json_default(value: object) -> object:
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"cannot pass {type(value).__name__} to Terraform")


def _leaf_strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _leaf_strings(item)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _leaf_strings(item)
