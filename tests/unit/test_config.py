"""The configuration tree: defaults, YAML, environment overrides, one message per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from lablink_core.cli import main
from lablink_core.config import ConfigError, database_url, load_config
from lablink_core.config.reference import markdown_reference


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lablink.yaml"
    path.write_text(text)
    return path


def test_defaults_are_the_seeds() -> None:
    config = load_config(environ={})
    assert config.db.table_name == "vms"
    assert config.db.message_channel == "vm_updates"
    assert config.machine.machine_type == "g4dn.xlarge"
    assert config.machine.ami_id == "ami-067cc81f948e50e06"
    assert config.machine.image == "ghcr.io/talmolab/lablink-allocator-client:0.2.0"
    assert config.machine.repository is None
    assert config.app.port == 5000
    assert database_url(config.db) is None  # nothing configured: the private server


def test_every_parameter_is_documented() -> None:
    config = load_config(environ={})
    for name in ("db", "machine", "app", "fleet"):
        section = config.section(name)
        for key in section.param:
            if key != "name":
                assert section.param[key].doc, f"{name}.{key} has no doc"


def test_yaml_and_environment(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "db:\n  host: db.internal\n  port: 6543\nmachine:\n  repository: https://github.com/x/y\n",
    )
    config = load_config(
        path,
        environ={
            "LABLINK_DB_PORT": "7000",
            "LABLINK_APP_MODE": "production",
            "LABLINK_APP_ADMIN_PASSWORD": "s3cret-pass",
            "LABLINK_ALLOCATOR_URL": "x",
        },
    )
    assert config.db.host == "db.internal" and config.db.port == 7000
    assert config.machine.repository == "https://github.com/x/y"
    assert database_url(config.db) == "postgresql+psycopg2://lablink@db.internal:7000/lablink"


def test_database_url_wins(tmp_path: Path) -> None:
    config = load_config(environ={"DATABASE_URL": "postgres://u:p@h:1/d"})
    assert database_url(config.db) == "postgresql+psycopg2://u:p@h:1/d"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("db:\n  prot: 5\n", "db.prot: unknown key"),
        ("dbs:\n  port: 5\n", "unknown section 'dbs'"),
        ("db:\n  port: eighty\n", "db.port: expected integer between 1 and 65535"),
        ("db:\n  port: 99999\n", "db.port"),
        ("db:\n  table_name: 'vms; drop table x'\n", "db.table_name"),
        ("app:\n  mode: production\n", "app.admin_password: required"),
        ("app:\n  mode: staging\n", "app.mode: expected one of local, production"),
        ("machine:\n  ami_id: not-an-ami\n", "machine.ami_id"),
        ("- just\n- a list\n", "must be a mapping"),
        ("db: [1, 2\n", "not valid YAML"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text), environ={})
    assert expected in str(error.value)


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, "db:\n  port: x\n  nope: 1\napp:\n  port: 0\n"), environ={})
    assert len(error.value.problems) == 3


def test_bad_environment_value_is_named() -> None:
    with pytest.raises(ConfigError, match=r"app\.port"):
        load_config(environ={"LABLINK_APP_PORT": "five thousand"})


def test_cli_show_masks_secrets(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABLINK_DB_PASSWORD", "hunter2-secret")
    monkeypatch.setenv("LABLINK_APP_ADMIN_PASSWORD", "admin-secret-1")
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert "hunter2-secret" not in out and "admin-secret-1" not in out
    assert "table_name: vms" in out


def test_cli_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "validate", str(write(tmp_path, "db:\n  port: 5432\n"))]) == 0
    assert main(["config", "validate", str(write(tmp_path, "db:\n  port: x\n"))]) == 2
    assert "db.port" in capsys.readouterr().err


def test_cli_init_sql_file_is_private(tmp_path: Path) -> None:
    target = tmp_path / "init.sql"
    assert main(["db", "init-sql", "-o", str(target)]) == 0
    assert target.stat().st_mode & 0o777 == 0o600
    assert "CREATE OR REPLACE TRIGGER vms_notify" in target.read_text()


def test_the_readme_lists_every_key_as_the_params_document_it() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index("<!-- config-reference:start")
    table = readme[readme.index("\n", start) + 1 : readme.index("<!-- config-reference:end -->")]
    assert table == markdown_reference(), "run `lablink config reference` into the README"
