"""Where a deployment's client fleet lives: its AWS environment, its names, its state
folder and backend, and the Terraform runner built from them."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from lablink_core.aws_credentials import AwsCredentialStore
from lablink_core.config import LablinkConfig
from lablink_core.fleet.terraform import CommandRunner, TerraformRunner
from lablink_core.fleet.terraform_backend import TerraformBackend, pg_backend

CLIENT_CONFIG_DIR = Path(__file__).resolve().parents[2] / "terraform" / "client"
PLUGIN_DIR_VARIABLE = "LABLINK_TF_PLUGIN_DIR"
_KEY_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")
_PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy")


def aws_environment(data_dir: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The AWS part of Terraform's environment.

    The keys the admin saved in the dashboard win; without them, the process's own
    ``AWS_*`` variables (keys, profile, or nothing: an instance profile) are passed on.
    Other ``AWS_*`` settings (``AWS_ENDPOINT_URL``, ``AWS_MAX_ATTEMPTS``...) and proxies
    always pass: production leaves them unset, tests point them at moto.
    """
    environ = os.environ if environ is None else environ
    env = {k: v for k, v in environ.items() if k.startswith("AWS_") or k in _PROXY_VARIABLES}
    saved = AwsCredentialStore(data_dir).as_env()
    if saved:
        for key in _KEY_VARIABLES:
            env.pop(key, None)
        env.update(saved)
    return env


def deployment_name(config: LablinkConfig) -> str:
    """The deployment's name in AWS (resource names, the lablink-deployment tag) and the
    name of its state folder: the VM name prefix, e.g. 'lablink-vm'."""
    return str(config.fleet.name_prefix).strip("-")[:32].rstrip("-") or "lablink"


def state_dir(data_dir: Path, deployment: str) -> Path:
    return Path(data_dir) / "terraform" / deployment


def loopback_url(url: str) -> bool:
    """Whether ``url`` points at this machine (no EC2 VM could reach it)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def client_runner(
    config: LablinkConfig,
    data_dir: Path,
    database_url: str,
    *,
    aws_env: Mapping[str, str] | None = None,
    plugin_dir: Path | None = None,
    source_dir: Path | None = None,
    commands: CommandRunner | None = None,
) -> TerraformRunner:
    """The Terraform runner of a deployment's client fleet: its work folder in
    ``<data_dir>/terraform/<deployment>/``, the backend ``fleet.terraform_backend`` names
    (pg: on ``database_url``), AWS settings from :func:`aws_environment` unless ``aws_env``
    is given, the provider mirror from ``plugin_dir`` or ``$LABLINK_TF_PLUGIN_DIR`` (else
    terraform init downloads it); ``commands`` runs the processes (tests record them)."""
    work_dir = state_dir(data_dir, deployment_name(config))
    work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # the state is sensitive
    configured_mirror = os.environ.get(PLUGIN_DIR_VARIABLE)
    configured_source = config.fleet.terraform_dir
    backend = (
        pg_backend(database_url, config.db.table_name)
        if config.fleet.terraform_backend == "pg"
        else TerraformBackend()
    )
    return TerraformRunner(
        source_dir=source_dir
        or (Path(configured_source) if configured_source else CLIENT_CONFIG_DIR),
        work_dir=work_dir,
        env=dict(aws_env) if aws_env is not None else aws_environment(data_dir),
        plugin_dir=plugin_dir or (Path(configured_mirror) if configured_mirror else None),
        parallelism=int(config.fleet.terraform_parallelism),
        backend=backend,
        runner=commands,
    )
