"""Event parsing, progress counting and the runner's contract, with a fake CommandRunner:
no terraform needed."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lablink_core.fleet.terraform import (
    TerraformCancelled,
    TerraformError,
    TerraformEvent,
    TerraformProgress,
    TerraformRunner,
)
from lablink_core.fleet.terraform_events import Redactor, error_message, parse_line

SECRET = "cred-0123456789-SECRET"
AWS_SECRET = "aws-secret-key-value"


def ui(kind: str, message: str, level: str = "info", **extra: object) -> str:
    """One line of terraform's -json UI."""
    return json.dumps({"@level": level, "@message": message, "type": kind, **extra}) + "\n"


def hook(kind: str, addr: str, action: str) -> str:
    return ui(kind, f"{addr}: {kind}", hook={"resource": {"addr": addr}, "action": action})


def planned(addr: str, action: str = "create") -> str:
    return ui(
        "planned_change",
        f"{addr}: Plan to {action}",
        change={"resource": {"addr": addr}, "action": action},
    )


def diagnostic(summary: str, severity: str = "error", address: str | None = None) -> str:
    body: dict[str, object] = {"severity": severity, "summary": summary, "detail": ""}
    if address:
        body["address"] = address
    return ui("diagnostic", f"Error: {summary}", level=severity, diagnostic=body)


APPLY_OK = [
    ui("version", "Terraform 1.11.4"),
    planned("aws_security_group.client"),
    planned('aws_instance.client["a"]'),
    planned('aws_instance.client["old"]', "delete"),
    ui("change_summary", "Plan: 2 to add, 0 to change, 1 to destroy."),
    hook("apply_start", "aws_security_group.client", "create"),
    hook("apply_complete", "aws_security_group.client", "create"),
    hook("apply_start", 'aws_instance.client["old"]', "delete"),
    hook("apply_complete", 'aws_instance.client["old"]', "delete"),
    hook("apply_start", 'aws_instance.client["a"]', "create"),
    hook("apply_progress", 'aws_instance.client["a"]', "create"),
    hook("apply_complete", 'aws_instance.client["a"]', "create"),
    ui("change_summary", "Apply complete! Resources: 2 added, 0 changed, 1 destroyed."),
]
OUTPUTS = json.dumps(
    {"vms": {"sensitive": False, "type": "map", "value": {"a": {"id": "i-1"}}}}, indent=2
)


@dataclass
class FakeRunner:
    """Plays scripted output per terraform verb and records every call."""

    scripts: dict[str, tuple[list[str], int]] = field(default_factory=dict)
    calls: list[tuple[list[str], dict[str, str]]] = field(default_factory=list)
    cancelled: int = 0
    during: Callable[[], None] | None = None

    def stream(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        on_line: Callable[[str], None],
    ) -> int:
        self.calls.append((list(argv), dict(env)))
        verb = argv[1]
        if verb == "init":
            (cwd / ".terraform").mkdir(exist_ok=True)
        lines, code = self.scripts.get(verb, ([OUTPUTS] if verb == "output" else [], 0))
        for line in lines:
            on_line(line)
            if self.during is not None:
                self.during()
        return code

    def cancel(self) -> None:
        self.cancelled += 1

    def verbs(self) -> list[str]:
        return [argv[1] for argv, _ in self.calls]


@pytest.fixture
def source_dir(tmp_path: Path) -> Path:
    """A tiny Terraform config (one .tf and one .tftpl)."""
    src = tmp_path / "config"
    src.mkdir()
    (src / "main.tf").write_text('variable "vm_names" {}\n')
    (src / "user_data.sh.tftpl").write_text("echo ${name}\n")
    (src / "README.md").write_text("not copied\n")
    return src


def make_runner(source_dir: Path, tmp_path: Path, fake: FakeRunner) -> TerraformRunner:
    return TerraformRunner(
        source_dir=source_dir,
        work_dir=tmp_path / "state",
        env={"AWS_ACCESS_KEY_ID": "AKIATEST", "AWS_SECRET_ACCESS_KEY": AWS_SECRET},
        plugin_dir=Path("/opt/tf-plugins"),
        runner=fake,
    )


def test_parse_line_reads_kind_message_resource_level() -> None:
    event = parse_line(hook("apply_complete", 'aws_instance.client["a"]', "create"))
    assert event == TerraformEvent(
        kind="apply_complete",
        message='aws_instance.client["a"]: apply_complete',
        resource='aws_instance.client["a"]',
        level="info",
        action="create",
    )
    diag = parse_line(diagnostic("boom", address="provider.aws"))
    assert diag is not None
    assert (diag.kind, diag.level, diag.resource) == ("diagnostic", "error", "provider.aws")
    warn = parse_line(diagnostic("careful", severity="warning"))
    assert warn is not None and warn.level == "warn"


def test_parse_line_turns_plain_text_into_log_and_skips_blank() -> None:
    assert parse_line("\n") is None
    event = parse_line("Initializing the backend...\n")
    assert event == TerraformEvent("log", "Initializing the backend...", None, "info")
    assert parse_line("[1, 2]\n") == TerraformEvent("log", "[1, 2]", None, "info")


def test_progress_counts_planned_created_destroyed_failed() -> None:
    progress = TerraformProgress()
    for line in [*APPLY_OK, hook("apply_errored", 'aws_instance.client["b"]', "create")]:
        event = parse_line(line)
        assert event is not None
        progress.update(event)
    assert (progress.planned, progress.created, progress.destroyed, progress.failed) == (3, 2, 1, 1)
    replace = parse_line(hook("apply_complete", "x.y", "replace"))
    assert replace is not None
    progress.update(replace)
    assert (progress.created, progress.destroyed) == (3, 2)


def test_apply_streams_each_event_with_running_progress(source_dir: Path, tmp_path: Path) -> None:
    fake = FakeRunner(scripts={"apply": (APPLY_OK, 0)})
    seen: list[tuple[str, int, int]] = []

    def on_event(event: TerraformEvent, progress: TerraformProgress) -> None:
        seen.append((event.kind, progress.created, progress.destroyed))

    outputs = make_runner(source_dir, tmp_path, fake).apply({"vm_names": ["a"]}, on_event)
    assert outputs == {"vms": {"a": {"id": "i-1"}}}
    assert [kind for kind, _, _ in seen] == [json.loads(line)["type"] for line in APPLY_OK]
    assert seen[-1] == ("change_summary", 2, 1)
    assert fake.verbs() == ["init", "apply", "output"]
    apply_argv = fake.calls[1][0]
    assert apply_argv[1:] == ["apply", "-json", "-auto-approve", "-input=false", "-parallelism=50"]


def test_init_runs_only_when_needed(source_dir: Path, tmp_path: Path) -> None:
    fake = FakeRunner()
    runner = make_runner(source_dir, tmp_path, fake)
    runner.ensure_init()
    runner.ensure_init()
    assert fake.verbs() == ["init"]
    assert "-plugin-dir=/opt/tf-plugins" in fake.calls[0][0]
    work = tmp_path / "state"
    assert sorted(p.name for p in work.glob("*.tf*")) == ["main.tf", "user_data.sh.tftpl"]
    (source_dir / "main.tf").write_text('variable "vm_names" { type = list(string) }\n')
    runner.ensure_init()
    assert fake.verbs() == ["init", "init"]
    assert "list(string)" in (work / "main.tf").read_text()
    (source_dir / "user_data.sh.tftpl").unlink()
    runner.ensure_init()
    assert not (work / "user_data.sh.tftpl").exists()


def test_work_dir_inside_source_is_refused(source_dir: Path) -> None:
    with pytest.raises(ValueError, match="outside"):
        TerraformRunner(source_dir=source_dir, work_dir=source_dir / "state", env={})


def test_variables_only_in_environment_never_argv_or_files(
    source_dir: Path, tmp_path: Path
) -> None:
    fake = FakeRunner(scripts={"apply": (APPLY_OK, 0), "destroy": ([], 0)})
    runner = make_runner(source_dir, tmp_path, fake)
    variables = {
        "vm_names": {"vm-a", "vm-b"},
        "vm_credentials": {"vm-a": SECRET},
        "count": 2,
        "on": True,
    }
    runner.apply(variables, lambda e, p: None)
    runner.destroy(variables, lambda e, p: None)
    (tmp_path / "state" / "terraform.tfstate").write_text("{}")  # state may hold anything
    for argv, env in fake.calls:
        assert not any(SECRET in arg or "vm-a" in arg for arg in argv)
        assert env["TF_IN_AUTOMATION"] == "1"
    apply_env = fake.calls[1][1]
    assert json.loads(apply_env["TF_VAR_vm_names"]) == ["vm-a", "vm-b"]
    assert json.loads(apply_env["TF_VAR_vm_credentials"]) == {"vm-a": SECRET}
    assert (apply_env["TF_VAR_count"], apply_env["TF_VAR_on"]) == ("2", "true")
    assert apply_env["AWS_SECRET_ACCESS_KEY"] == AWS_SECRET
    output_env = fake.calls[2][1]
    assert not any(key.startswith("TF_VAR_") for key in output_env)
    for path in (tmp_path / "state").rglob("*"):
        if path.is_file() and not path.name.startswith("terraform.tfstate"):
            assert SECRET not in path.read_text(errors="replace"), path


def test_environment_starts_minimal(
    source_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TF_CLI_ARGS", "-destroy")
    monkeypatch.setenv("SOME_HOST_SECRET", "x")
    fake = FakeRunner()
    make_runner(source_dir, tmp_path, fake).ensure_init()
    env = fake.calls[0][1]
    assert "TF_CLI_ARGS" not in env and "SOME_HOST_SECRET" not in env
    assert "PATH" in env


def test_failure_raises_with_error_summaries_and_redacted_log(
    source_dir: Path, tmp_path: Path
) -> None:
    lines = [
        planned('aws_instance.client["a"]'),
        diagnostic(
            f"creating EC2 Instance: connection refused ({SECRET})",
            address='aws_instance.client["a"]',
        ),
        diagnostic("creating EC2 Instance: connection refused", address='aws_instance.client["b"]'),
        diagnostic("deprecated", severity="warning"),
        f"plain stderr line mentioning {AWS_SECRET}\n",
    ]
    fake = FakeRunner(scripts={"apply": (lines, 1)})
    events: list[TerraformEvent] = []
    with pytest.raises(TerraformError) as info:
        make_runner(source_dir, tmp_path, fake).apply(
            {"vm_credentials": {"a": SECRET}}, lambda e, p: events.append(e)
        )
    error = info.value
    assert str(error).splitlines() == [
        "creating EC2 Instance: connection refused (***)",
        "creating EC2 Instance: connection refused",
    ]
    assert error.returncode == 1 and len(error.diagnostics) == 3
    assert SECRET not in error.log and AWS_SECRET not in error.log and "***" in error.log
    assert all(SECRET not in e.message for e in events)


def test_failure_without_diagnostics_reports_output_tail(source_dir: Path, tmp_path: Path) -> None:
    fake = FakeRunner(
        scripts={"init": (["Error: Failed to query available provider packages\n"], 1)}
    )
    with pytest.raises(TerraformError, match="Failed to query available provider"):
        make_runner(source_dir, tmp_path, fake).ensure_init()


def test_broken_callback_does_not_abort_the_run(source_dir: Path, tmp_path: Path) -> None:
    fake = FakeRunner(scripts={"apply": (APPLY_OK, 0)})

    def on_event(event: TerraformEvent, progress: TerraformProgress) -> None:
        raise RuntimeError("UI is gone")

    assert make_runner(source_dir, tmp_path, fake).apply({}, on_event) == {
        "vms": {"a": {"id": "i-1"}}
    }


def test_cancel_signals_the_runner_and_raises_cancelled(source_dir: Path, tmp_path: Path) -> None:
    fake = FakeRunner(scripts={"apply": (APPLY_OK, 1)})
    runner = make_runner(source_dir, tmp_path, fake)
    runner.ensure_init()
    fake.during = runner.cancel
    with pytest.raises(TerraformCancelled):
        runner.apply({}, lambda e, p: None)
    assert fake.cancelled >= 1
    fake.during = None
    fake.scripts["apply"] = (APPLY_OK, 0)
    runner.apply({}, lambda e, p: None)  # a finished cancel does not leak into the next run


def test_one_command_at_a_time(source_dir: Path, tmp_path: Path) -> None:
    fake = FakeRunner(scripts={"apply": (APPLY_OK[:2], 0)})
    runner = make_runner(source_dir, tmp_path, fake)
    errors: list[BaseException] = []

    def other_thread() -> None:
        try:
            runner.outputs()
        except TerraformError as error:
            errors.append(error)

    def during() -> None:
        if not errors:
            thread = threading.Thread(target=other_thread)
            thread.start()
            thread.join()

    fake.during = during
    runner.apply({}, lambda e, p: None)
    assert errors and "another terraform command" in str(errors[0])


def test_bad_variable_name_is_refused(source_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="variable name"):
        make_runner(source_dir, tmp_path, FakeRunner()).apply({"a b": 1}, lambda e, p: None)


def test_redactor_replaces_longest_secret_first() -> None:
    redact = Redactor(["abcd", "abcdefgh", "", "xy"])
    assert redact("abcdefgh abcd xy") == "*** *** xy"


def test_error_message_adds_first_paragraph_of_detail() -> None:
    line = ui(
        "diagnostic",
        "Error: Resource precondition failed",
        level="error",
        diagnostic={
            "severity": "error",
            "summary": "Resource precondition failed",
            "detail": "vm_credentials has no credential\nfor VM vm-b.\n\nThis was checked by ...",
        },
    )
    event = parse_line(line)
    assert event is not None
    assert error_message([event, event], []) == (
        "Resource precondition failed: vm_credentials has no credential for VM vm-b."
    )


def test_a_new_environment_reaches_the_next_command(source_dir: Path, tmp_path: Path) -> None:
    fake = FakeRunner()
    runner = make_runner(source_dir, tmp_path, fake)
    runner.apply({}, lambda event, progress: None)
    runner.set_env({"AWS_ACCESS_KEY_ID": "AKIAROTATED", "AWS_SECRET_ACCESS_KEY": "rotated-secret"})
    runner.apply({}, lambda event, progress: None)
    before, after = [env for argv, env in fake.calls if argv[1] == "apply"]
    assert before["AWS_ACCESS_KEY_ID"] == "AKIATEST"
    assert after["AWS_ACCESS_KEY_ID"] == "AKIAROTATED"
