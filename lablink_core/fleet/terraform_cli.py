"""python-terraform's command builders, run through the runner's own process seam.

python-terraform 0.10.1 knows Terraform's options (``init``'s ``-backend-config`` pairs,
flags such as ``-migrate-state``) and parses ``output -json``; the runner uses it for the
short commands: init, validate, output, state list and state pull. Its way of *running* a
command does not fit, so :meth:`TerraformCli.cmd` replaces it:

- it hands terraform the whole host environment or none at all; the runner passes a
  minimal one of its own (keys, ``PG_CONN_STR``, ``TF_VAR_*``), and redacts secrets;
- it writes map variables to temporary ``.tfvars.json`` files; ours go only through
  ``TF_VAR_`` variables, so a variable given to it here is refused;
- it buffers output until the process ends and cannot stream (``synchronous=False`` passes a
  bogus flag), so ``apply`` and ``destroy``, whose ``-json`` events are streamed to the
  dashboard, stay with :meth:`TerraformRunner._run_checked`; its ``destroy`` also passes
  the ``-force`` flag Terraform 1.x removed;
- ``output("name")`` raises TypeError on Terraform 1.x: call it with ``full_value=True``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from python_terraform import IsFlagged, IsNotFlagged, Terraform, TerraformCommandError

__all__ = ["IsFlagged", "IsNotFlagged", "TerraformCli", "TerraformCommandError"]

Execute = Callable[[Sequence[str]], tuple[int, str]]
"""Runs one argv in the work folder; returns its exit code and its output (stdout and
stderr merged, secrets redacted)."""


class TerraformCli(Terraform):  # type: ignore[misc]  # python-terraform is untyped
    """python-terraform whose commands run through ``execute`` (see the module docstring)."""

    def __init__(self, *, work_dir: Path, terraform_bin: str, execute: Execute) -> None:
        self._execute = execute
        super().__init__(
            working_dir=str(work_dir), terraform_bin_path=terraform_bin, is_env_vars_included=False
        )

    def read_state_file(self, file_path: str | None = None) -> None:
        # python-terraform re-reads terraform.tfstate after every command; the state may be
        # in PostgreSQL, and nothing here needs its copy.
        self.tfstate = None

    def cmd(self, cmd: str, *args: Any, **kwargs: Any) -> tuple[int, str, str]:
        """Build the argv as python-terraform does, run it through ``execute``.

        Returns ``(code, output, "")`` (stderr is merged into output); with
        ``raise_on_error=True`` a failure raises python-terraform's TerraformCommandError.
        """
        kwargs.pop("capture_output", None)
        kwargs.pop("synchronous", None)
        raise_on_error = bool(kwargs.pop("raise_on_error", False))
        if kwargs.pop("var", None) or kwargs.pop("var_file", None):
            raise ValueError("variables reach terraform only through TF_VAR_ variables")
        argv = self.generate_cmd_string(cmd, *args, **kwargs)
        code, out = self._execute(argv)
        if code != 0 and raise_on_error:
            raise TerraformCommandError(code, " ".join(argv[:2]), out=out, err="")
        return code, out, ""
