"""Launching, scaling and destroying client VMs: the :class:`Fleet` and its providers.

:func:`make_provider` picks the provider the configuration asks for; :func:`make_fleet`
builds the Fleet on a process's services.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from lablink_core.errors import LablinkError
from lablink_core.fleet.base import (
    FleetOperationFailed,
    FleetOperationHandle,
    FleetProgress,
    FleetProvider,
    LogCallback,
    ProgressCallback,
)
from lablink_core.fleet.fleet import Fleet
from lablink_core.fleet.local import LocalProvider

if TYPE_CHECKING:
    from lablink_core.config import LablinkConfig
    from lablink_core.services import Services

__all__ = [
    "Fleet",
    "FleetOperationFailed",
    "FleetOperationHandle",
    "FleetProgress",
    "FleetProvider",
    "LocalProvider",
    "LogCallback",
    "ProgressCallback",
    "ProviderUnavailable",
    "aws_configured",
    "make_fleet",
    "make_provider",
    "provider_name",
]

AWS_CREDENTIALS_FILE = "aws-credentials.json"


class ProviderUnavailable(LablinkError):
    """The configured provider cannot be built in this installation."""

    code = "provider_unavailable"


def aws_configured(data_dir: Path) -> bool:
    """AWS keys in the environment, or saved by the dashboard's credentials page."""
    return bool(os.environ.get("AWS_ACCESS_KEY_ID")) or (data_dir / AWS_CREDENTIALS_FILE).is_file()


def provider_name(config: LablinkConfig, data_dir: Path) -> str:
    """'local' or 'aws': fleet.provider, with 'auto' meaning aws when keys are configured."""
    chosen = str(config.fleet.provider)
    if chosen == "auto":
        return "aws" if aws_configured(data_dir) else "local"
    return chosen


def make_provider(
    config: LablinkConfig, services: Services, allocator_url: str, data_dir: Path
) -> FleetProvider:
    """The provider the configuration asks for.

    ``allocator_url`` is how local VMs reach this server (http://127.0.0.1:<port>); AWS VMs
    use ``app.public_url`` when it is set. The AWS provider is built by
    ``lablink_core.fleet.aws.make_aws_provider`` (Terraform state under ``data_dir``).
    """
    if provider_name(config, data_dir) == "local":
        enrolment = services.enrolment
        return LocalProvider(
            services.engine,
            allocator_url,
            lambda name: enrolment.enrol(name, provider="local", fresh=True),
            record_dir=data_dir / "local-vms",
            heartbeat_seconds=config.fleet.local_heartbeat_seconds,
        )
    try:
        aws = importlib.import_module("lablink_core.fleet.aws")
    except ImportError as error:
        raise ProviderUnavailable(
            "fleet.provider is 'aws' (or 'auto' with AWS keys set), but this installation has "
            "no AWS provider (lablink_core.fleet.aws); set fleet.provider to 'local'."
        ) from error
    provider: FleetProvider = aws.make_aws_provider(
        config,
        services,
        allocator_url=config.app.public_url or allocator_url,
        data_dir=data_dir,
    )
    return provider


def make_fleet(config: LablinkConfig, services: Services, provider: FleetProvider) -> Fleet:
    """The Fleet on these services, with the configured name prefix and size limit."""
    return Fleet(
        services.engine,
        services.registry,
        provider,
        name_prefix=config.fleet.name_prefix,
        max_instances=config.fleet.max_instances,
        metrics=services.metrics,
    )
