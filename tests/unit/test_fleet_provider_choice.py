"""Which provider the configuration picks: 'auto' means AWS only when keys are configured."""

from __future__ import annotations

from pathlib import Path

import pytest

from lablink_core.config import LablinkConfig, load_config
from lablink_core.fleet import aws_configured, provider_name


@pytest.fixture(autouse=True)
def no_aws_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)


def config_with(provider: str) -> LablinkConfig:
    return load_config(environ={"LABLINK_FLEET_PROVIDER": provider})


def test_auto_is_local_without_keys(tmp_path: Path) -> None:
    assert not aws_configured(tmp_path)
    assert provider_name(config_with("auto"), tmp_path) == "local"


def test_auto_is_aws_with_keys_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEEXAMPLE00")
    assert provider_name(config_with("auto"), tmp_path) == "aws"


def test_auto_is_aws_with_keys_saved_by_the_dashboard(tmp_path: Path) -> None:
    (tmp_path / "aws-credentials.json").write_text("{}")
    assert provider_name(config_with("auto"), tmp_path) == "aws"


def test_an_explicit_choice_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEEXAMPLE00")
    assert provider_name(config_with("local"), tmp_path) == "local"
    assert provider_name(config_with("aws"), tmp_path) == "aws"
