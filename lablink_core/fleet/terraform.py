"""Runs Terraform for a fleet: copies a config into a state folder, applies and destroys it.

Every JSON event ``apply`` and ``destroy`` print is streamed to the caller as it arrives;
the short commands (init, validate, output, state pull) are built by python-terraform (see
:mod:`lablink_core.fleet.terraform_cli`). Variables reach terraform only through its
environment, and known secret values are redacted from everything this module logs or
reports (see :mod:`lablink_core.fleet.terraform_env`). The state is a local file in the work
folder or, with a ``pg`` :class:`TerraformBackend`, a schema of the allocator's PostgreSQL.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lablink_core.fleet.terraform_backend import OVERRIDE_FILE, TerraformBackend
from lablink_core.fleet.terraform_cli import (
    IsFlagged,
    IsNotFlagged,
    TerraformCli,
    TerraformCommandError,
)
from lablink_core.fleet.terraform_env import command_environment, secret_redactor
from lablink_core.fleet.terraform_events import (
    EventCallback,
    OutputCollector,
    Redactor,
    TerraformCancelled,
    TerraformError,
    TerraformEvent,
    TerraformProgress,
    error_message,
)
from lablink_core.fleet.terraform_files import json_object, sync_config
from lablink_core.fleet.terraform_process import CommandRunner, SubprocessRunner

__all__ = [
    "CommandRunner",
    "EventCallback",
    "SubprocessRunner",
    "TerraformBackend",
    "TerraformCancelled",
    "TerraformError",
    "TerraformEvent",
    "TerraformProgress",
    "TerraformRunner",
]

log = logging.getLogger(__name__)

CONFIG_DIGEST_FILE = ".lablink-config.sha256"
STATE_FILE = "terraform.tfstate"
MIGRATE_HINT = (
    "\n(this folder still has a local state: move it into PostgreSQL with "
    "`lablink fleet migrate-state`)"
)


class TerraformRunner:
    """One Terraform config (`source_dir`) and its state (`work_dir`, or the `backend`);
    one command at a time."""

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
        backend: TerraformBackend | None = None,
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
        self.backend = backend or TerraformBackend()
        self._runner: CommandRunner = runner if runner is not None else SubprocessRunner()
        self._cli = TerraformCli(
            work_dir=self.work_dir, terraform_bin=terraform_bin, execute=self._execute
        )
        self._last: OutputCollector | None = None
        self._busy = threading.RLock()
        self._cancelled = threading.Event()
        self._depth = 0

    @property
    def env(self) -> dict[str, str]:
        """The environment given to this runner (AWS settings; not the backend's)."""
        return dict(self._env)

    def set_env(self, env: Mapping[str, str]) -> None:
        """Replace the environment the next command gets (e.g. rotated AWS keys)."""
        with self._busy:
            self._env = dict(env)

    def ensure_init(self) -> None:
        """Copy the config into work_dir; run `terraform init` if never run or config changed.

        A changed backend is not silently re-initialised (no ``-reconfigure``, which would
        leave the old state behind): Terraform refuses until the state is migrated."""
        with self._exclusive():
            digest = self._sync_config()
            marker = self.work_dir / CONFIG_DIGEST_FILE
            initialised = (self.work_dir / ".terraform").is_dir()
            if initialised and marker.is_file() and marker.read_text() == digest:
                return
            try:
                self._init()
            except TerraformError as error:
                if self.backend.shared and (self.work_dir / STATE_FILE).is_file():
                    error.message += MIGRATE_HINT
                raise
            marker.write_text(digest)

    def migrate_state(self) -> None:
        """Move the state there is into the configured backend (``init -migrate-state
        -force-copy``): how a local state goes into PostgreSQL."""
        with self._exclusive():
            digest = self._sync_config()
            self._init(migrate_state=IsFlagged, force_copy=IsFlagged)
            (self.work_dir / CONFIG_DIGEST_FILE).write_text(digest)

    def apply(
        self,
        variables: Mapping[str, object],
        on_event: EventCallback,
        *,
        replace: Sequence[str] = (),
        targets: Sequence[str] = (),
    ) -> dict[str, object]:
        """Create or update the fleet to match `variables`; returns terraform's outputs.
        ``replace`` forces new instances of these addresses; ``targets`` limits the run."""
        argv = self._command("apply")
        argv += [f"-replace={address}" for address in replace]
        argv += [f"-target={address}" for address in targets]
        with self._exclusive():
            self.ensure_init()
            self._run_checked(argv, variables, on_event)
            return self._read_outputs()

    def destroy(self, variables: Mapping[str, object], on_event: EventCallback) -> None:
        """Destroy every resource in the state."""
        with self._exclusive():
            self.ensure_init()
            self._run_checked(self._command("destroy"), variables, on_event)

    def outputs(self) -> dict[str, object]:
        """The current outputs, name -> value; empty when nothing was applied."""
        with self._exclusive():
            if not self.backend.shared and not (self.work_dir / STATE_FILE).is_file():
                return {}
            self.ensure_init()
            return self._read_outputs()

    def output(self, name: str) -> object:
        """One output's value; None when the state has no such output."""
        with self._exclusive():
            self.ensure_init()
            try:
                return self._cli.output(name, full_value=True)  # None when terraform fails
            except ValueError as error:
                raise TerraformError(f"terraform output {name} printed no JSON") from error

    def state(self) -> dict[str, object]:
        """The state as Terraform has it (`terraform state pull`); {} when there is none."""
        with self._exclusive():
            if not self.backend.shared and not (self.work_dir / STATE_FILE).is_file():
                return {}
            self.ensure_init()
            _, out, _ = self._call(self._cli.cmd, "state pull", raise_on_error=True)
            if not out.strip():
                return {}
            return json_object(out, "terraform state pull")

    def validate(self) -> dict[str, object]:
        """`terraform validate -json`: its report ("valid", "diagnostics", ...)."""
        with self._exclusive():
            self.ensure_init()
            _, out, _ = self._call(self._cli.cmd, "validate", json=IsFlagged, no_color=IsFlagged)
            return json_object(out, "terraform validate")

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

    def _init(self, **flags: object) -> None:
        self._call(
            self._cli.init,
            backend_config=self.backend.init_config() or None,
            reconfigure=IsNotFlagged,  # python-terraform's default; see ensure_init
            plugin_dir=str(self.plugin_dir) if self.plugin_dir is not None else None,
            raise_on_error=True,
            **flags,
        )

    def _generated_files(self) -> dict[str, bytes]:
        override = self.backend.override()
        return {OVERRIDE_FILE: override.encode()} if override is not None else {}

    def _sync_config(self) -> str:
        generated = self._generated_files()
        return sync_config(self.source_dir, self.work_dir, generated, self.backend.init_config())

    def _environment(self, variables: Mapping[str, object]) -> dict[str, str]:
        return command_environment(self._env, self.backend, variables)

    def _redactor(self, variables: Mapping[str, object]) -> Redactor:
        return secret_redactor(self._env, self.backend, variables)

    def _execute(self, argv: Sequence[str]) -> tuple[int, str]:
        """How python-terraform's commands run: no variables, output collected, redacted."""
        collector = OutputCollector(self._redactor({}), None)
        self._last = collector
        code = self._runner.stream(
            argv, cwd=self.work_dir, env=self._environment({}), on_line=collector
        )
        return code, collector.text

    def _call(self, command: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[int, str, str]:
        """A python-terraform call; its TerraformCommandError becomes a TerraformError."""
        try:
            result: tuple[int, str, str] = command(*args, **kwargs)
        except TerraformCommandError as error:
            collected = self._last
            lines = collected.lines if collected is not None else []
            diagnostics = collected.diagnostics if collected is not None else []
            raise TerraformError(
                error_message(diagnostics, lines),
                log="".join(lines),
                diagnostics=diagnostics,
                returncode=error.returncode,
            ) from None
        return result

    def _run_checked(
        self,
        argv: Sequence[str],
        variables: Mapping[str, object],
        on_event: EventCallback | None,
    ) -> None:
        """Run one terraform command, streaming events; raise TerraformError on failure."""
        collector = OutputCollector(self._redactor(variables), on_event)
        if self._cancelled.is_set():
            raise TerraformCancelled(f"terraform {argv[1]} was cancelled before it started")
        started = time.monotonic()
        log.info("terraform %s in %s (variables: %s)", argv[1], self.work_dir, sorted(variables))
        code = self._runner.stream(
            argv, cwd=self.work_dir, env=self._environment(variables), on_line=collector
        )
        log.info("terraform %s exited %s after %.1f s", argv[1], code, time.monotonic() - started)
        if self._cancelled.is_set():
            raise TerraformCancelled(
                f"terraform {argv[1]} was cancelled", log=collector.text, returncode=code
            )
        if code != 0:
            raise TerraformError(
                error_message(collector.diagnostics, collector.lines),
                log=collector.text,
                diagnostics=collector.diagnostics,
                returncode=code,
            )

    def _read_outputs(self) -> dict[str, object]:
        """`terraform output -json` through python-terraform, as name -> value."""
        _, out, _ = self._call(self._cli.output_cmd, json=IsFlagged, raise_on_error=True)
        raw = json_object(out, "terraform output")
        return {name: entry.get("value") for name, entry in raw.items()}
