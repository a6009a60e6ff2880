"""The runner with a pg backend and python-terraform's command building, with a fake
CommandRunner: no terraform needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from lablink_core.fleet.terraform import TerraformError, TerraformRunner
from lablink_core.fleet.terraform_backend import OVERRIDE_FILE, TerraformBackend, pg_backend
from tests.unit.test_terraform_events import FakeRunner

DATABASE_URL = "postgresql+psycopg2://lablink:db-password-0123@db.example.org:5432/lablink"


def runner(
    source_dir: Path, tmp_path: Path, fake: FakeRunner, backend: TerraformBackend
) -> TerraformRunner:
    return TerraformRunner(
        source_dir=source_dir,
        work_dir=tmp_path / "state",
        env={"AWS_ACCESS_KEY_ID": "AKIATEST"},
        plugin_dir=Path("/opt/tf-plugins"),
        runner=fake,
        backend=backend,
    )


@pytest.fixture
def source_dir(tmp_path: Path) -> Path:
    src = tmp_path / "config"
    src.mkdir()
    (src / "main.tf").write_text('variable "vm_names" {}\n')
    return src


def test_pg_init_gets_the_schema_on_argv_and_the_connection_only_in_its_environment(
    source_dir: Path, tmp_path: Path
) -> None:
    fake = FakeRunner()
    backend = pg_backend(DATABASE_URL)
    runner(source_dir, tmp_path, fake, backend).ensure_init()
    [(argv, env)] = fake.calls
    assert argv[:2] == ["terraform", "init"]
    assert "-backend-config=schema_name=lablink_tfstate" in argv
    assert "-plugin-dir=/opt/tf-plugins" in argv and "-input=false" in argv
    assert "-reconfigure" not in argv, "a changed backend must not silently drop a state"
    assert not any("db-password" in arg or "postgres" in arg for arg in argv)
    assert env["PG_CONN_STR"] == backend.conn_str
    override = (tmp_path / "state" / OVERRIDE_FILE).read_text()
    assert 'backend "pg" {}' in override and "db-password" not in override


def test_changing_the_backend_runs_init_again_and_drops_the_override(
    source_dir: Path, tmp_path: Path
) -> None:
    fake = FakeRunner()
    runner(source_dir, tmp_path, fake, TerraformBackend()).ensure_init()
    runner(source_dir, tmp_path, fake, pg_backend(DATABASE_URL)).ensure_init()
    runner(source_dir, tmp_path, fake, pg_backend(DATABASE_URL)).ensure_init()
    assert fake.verbs() == ["init", "init"]
    runner(source_dir, tmp_path, fake, TerraformBackend()).ensure_init()
    assert fake.verbs() == ["init", "init", "init"]
    assert not (tmp_path / "state" / OVERRIDE_FILE).exists()


def test_a_failed_init_is_redacted_and_points_at_the_migration(
    source_dir: Path, tmp_path: Path
) -> None:
    backend = pg_backend(DATABASE_URL)
    lines = [f"Error: Backend initialization required ({backend.conn_str})\n"]
    fake = FakeRunner(scripts={"init": (lines, 1)})
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "terraform.tfstate").write_text('{"resources": []}')
    with pytest.raises(TerraformError) as raised:
        runner(source_dir, tmp_path, fake, backend).ensure_init()
    message = str(raised.value)
    assert "db-password-0123" not in message and "db-password-0123" not in raised.value.log
    assert "Backend initialization required (***)" in message
    assert "lablink fleet migrate-state" in message


def test_state_is_pulled_through_terraform_with_pg(source_dir: Path, tmp_path: Path) -> None:
    state = '{"version": 4, "resources": [{"mode": "managed", "type": "aws_instance"}]}\n'
    fake = FakeRunner(scripts={"state": ([state], 0)})
    pulled = runner(source_dir, tmp_path, fake, pg_backend(DATABASE_URL)).state()
    assert pulled["version"] == 4
    assert fake.calls[-1][0] == ["terraform", "state", "pull"]


def test_python_terraform_is_never_handed_variables(source_dir: Path, tmp_path: Path) -> None:
    cli = runner(source_dir, tmp_path, FakeRunner(), TerraformBackend())._cli
    with pytest.raises(ValueError, match="TF_VAR_"):
        cli.cmd("plan", var={"vm_names": ["a"]})


def test_apply_can_replace_and_target_one_instance(source_dir: Path, tmp_path: Path) -> None:
    fake = FakeRunner()
    address = 'aws_instance.client["vm-a"]'
    runner(source_dir, tmp_path, fake, TerraformBackend()).apply(
        {}, lambda event, progress: None, replace=[address], targets=[address]
    )
    apply_argv = next(argv for argv, _ in fake.calls if argv[1] == "apply")
    assert apply_argv[-2:] == [f"-replace={address}", f"-target={address}"]
