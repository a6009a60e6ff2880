"""The client fleet's Terraform state in PostgreSQL (fleet.terraform_backend: pg): a local state
migrated by `lablink fleet migrate-state`, then two allocators with separate data folders on
one database acting on that one state against moto. Real terraform, real PostgreSQL."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from lablink_core import cli
from lablink_core.config import LablinkConfig, load_config
from lablink_core.errors import LablinkError
from lablink_core.fleet import Fleet, make_fleet
from lablink_core.fleet.aws import AwsProvider, client_runner, deployment_name
from lablink_core.fleet.state import MIGRATED_SUFFIX, migrate_local_state
from lablink_core.fleet.terraform import STATE_FILE, TerraformError
from lablink_core.fleet.terraform_backend import libpq_url, pg_backend, state_schema
from lablink_core.services import Services, open_services
from tests.fixtures.aws import MotoServer, RecordingRunner
from tests.integration.test_fleet_aws import instances, security_groups

pytestmark = pytest.mark.terraform


class Allocator:
    """One allocator "host": its own data folder and services, the shared database."""

    def __init__(self, database_url: str, data_dir: Path, backend: str, env: dict[str, str],
                 plugin_dir: Path) -> None:  # fmt: skip
        self.data_dir = data_dir
        self.config = settings(database_url, data_dir, backend)
        self.services: Services = open_services(self.config, migrate=False)
        self.commands = RecordingRunner()
        runner = client_runner(
            self.config,
            data_dir,
            self.services.url,
            aws_env=env,
            plugin_dir=plugin_dir,
            commands=self.commands,
        )
        self.provider = AwsProvider(
            runner=runner,
            issue_enrolment=self.services.enrolment.issue_enrolment,
            config=self.config,
            allocator_url="http://203.0.113.7:5000",
        )
        self.fleet: Fleet = make_fleet(self.config, self.services, self.provider)

    @property
    def work_dir(self) -> Path:
        return self.provider.work_dir

    def close(self) -> None:
        self.services.close(stop_database=False)


def settings(database_url: str, data_dir: Path, backend: str) -> LablinkConfig:
    return load_config(environ=environment(database_url, data_dir, backend))


def environment(database_url: str, data_dir: Path, backend: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "LABLINK_APP_DATA_DIR": str(data_dir),
        "LABLINK_FLEET_TERRAFORM_BACKEND": backend,
        "LABLINK_MACHINE_MACHINE_TYPE": "t3.micro",
    }


def state_rows(database_url: str) -> list[str]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT name FROM lablink_tfstate.states"))
            return list(rows.scalars())
    finally:
        engine.dispose()


def test_a_migrated_state_is_shared_by_two_allocators_on_one_database(
    terraform_plugin_dir: Path,
    empty_moto: MotoServer,
    aws_env: dict[str, str],
    ec2_client: Any,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    host_a, host_b = tmp_path / "host-a", tmp_path / "host-b"
    opened: list[Allocator] = []

    def allocator(data_dir: Path, backend: str) -> Allocator:
        opened.append(Allocator(database_url, data_dir, backend, aws_env, terraform_plugin_dir))
        return opened[-1]

    try:
        # Host A starts with a local state and one VM.
        local_a = allocator(host_a, "local")
        assert local_a.fleet.launch(1).state == "succeeded"
        assert (local_a.work_dir / STATE_FILE).is_file()

        # Switched to pg without migrating, it refuses to start from an empty state.
        pg_a = allocator(host_a, "pg")
        with pytest.raises(TerraformError, match="lablink fleet migrate-state"):
            pg_a.provider.instances()

        # `lablink fleet migrate-state` moves the state into the database.
        for name, value in {
            **environment(database_url, host_a, "pg"),
            "LABLINK_TF_PLUGIN_DIR": str(terraform_plugin_dir),
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("LABLINK_CONFIG", raising=False)
        assert cli.main(["fleet", "migrate-state"]) == 0
        assert "moved the fleet state (1 VM, 2 resources) into PostgreSQL schema" in (
            capsys.readouterr().out
        )
        assert not (local_a.work_dir / STATE_FILE).exists()
        kept = local_a.work_dir / f"{STATE_FILE}{MIGRATED_SUFFIX}"
        assert kept.stat().st_mode & 0o777 == 0o600
        assert state_rows(database_url) == ["default"]
        assert pg_a.provider.instances() == {"lablink-vm-001"}

        # Host A launches one more; host B, another data folder, scales the fleet down.
        assert pg_a.fleet.launch(1).state == "succeeded"
        pg_b = allocator(host_b, "pg")
        assert pg_b.provider.instances() == {"lablink-vm-001", "lablink-vm-002"}
        assert pg_b.fleet.scale_to(1).state == "succeeded"

        # One state: no orphaned instance, no second security group.
        assert set(instances(ec2_client)) == {"lablink-vm-001"}
        assert len(security_groups(ec2_client)) == 1
        assert pg_a.provider.instances() == pg_b.provider.instances() == {"lablink-vm-001"}
        assert {vm["hostname"] for vm in pg_a.fleet.vms()} == {"lablink-vm-001"}
        assert not (pg_b.work_dir / STATE_FILE).exists()
        assert_connection_only_in_the_environment([pg_a, pg_b], database_url)

        # Migrating another local state over a shared one that has resources is refused.
        other = tmp_path / "host-c" / "terraform" / deployment_name(pg_a.config)
        other.mkdir(parents=True)
        shutil.copy(kept, other / STATE_FILE)
        runner = client_runner(
            settings(database_url, tmp_path / "host-c", "pg"),
            tmp_path / "host-c",
            database_url,
            plugin_dir=terraform_plugin_dir,
        )
        with pytest.raises(LablinkError, match="refusing to overwrite it"):
            migrate_local_state(runner)
        assert (other / STATE_FILE).is_file()
    finally:
        for opened_allocator in opened:
            opened_allocator.close()


def assert_connection_only_in_the_environment(hosts: list[Allocator], database_url: str) -> None:
    """PG_CONN_STR went to every terraform process's environment, never argv or a file."""
    conn_str = libpq_url(database_url)
    for host in hosts:
        assert host.commands.commands, "terraform ran"
        for argv, env, _ in host.commands.commands:
            assert env["PG_CONN_STR"] == conn_str
            assert not any("postgres" in arg for arg in argv), argv
        for path in host.work_dir.rglob("*"):
            if path.is_file() and "providers" not in path.parts:
                assert conn_str not in path.read_text(errors="replace"), path
        backend = json.loads((host.work_dir / ".terraform" / "terraform.tfstate").read_text())
        assert backend["backend"]["type"] == "pg"
        assert backend["backend"]["config"]["schema_name"] == "lablink_tfstate"


# Pure parts: no terraform needed. ------------------------------------------------------


def test_the_connection_string_suits_lib_pq() -> None:
    local = "postgresql+psycopg2://postgres@127.0.0.1:5544/lablink"
    assert libpq_url(local) == "postgres://postgres@127.0.0.1:5544/lablink?sslmode=disable"
    remote = "postgresql+psycopg2://lablink:s3cret@db.example.org:5432/lablink"
    assert libpq_url(remote).endswith("@db.example.org:5432/lablink?sslmode=require")
    assert libpq_url(remote + "?sslmode=prefer").endswith("?sslmode=require")
    assert libpq_url(remote + "?sslmode=verify-full").endswith("?sslmode=verify-full")
    socket = "postgresql+psycopg2://lablink@/lablink?host=/var/run/postgresql"
    assert "sslmode=disable" in libpq_url(socket)
    backend = pg_backend(remote)
    assert backend.env() == {"PG_CONN_STR": libpq_url(remote)}
    assert "s3cret" in backend.secrets() and "s3cret" not in repr(backend)
    assert backend.init_config() == {"schema_name": "lablink_tfstate"}
    assert state_schema("vms") == "lablink_tfstate"
    assert state_schema("workshop_vms") == "lablink_tfstate_workshop_vms"
