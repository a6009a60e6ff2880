"""The AWS provider: client VMs as EC2 instances, kept by Terraform (``terraform/client``).

Every change is one ``terraform apply`` of the whole fleet: the provider holds the set of VM
names and applies ``vm_names`` = that set plus or minus the VMs asked for, so Terraform
creates or destroys exactly the difference (each VM is keyed by its name). ``delete_all`` is
``terraform destroy``: the instances, then the security group they share.

Terraform's state lives in ``<data_dir>/terraform/<deployment>/``. The set is re-read from
that state at the start of every operation: the Fleet lock serialises operations across
server processes, so the state (not a process's memory) is what every one of them starts
from, and a failed apply leaves behind exactly what Terraform recorded.

Secrets reach Terraform only through its environment: each VM's credential in the sensitive
``vm_credentials`` variable (``TF_VAR_vm_credentials``, as :class:`TerraformRunner` passes
variables), the AWS keys as ``AWS_*`` variables. Nothing is written to argv, a tfvars file or
a log line.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from lablink_core.aws_credentials import AwsCredentialStore
from lablink_core.config import LablinkConfig
from lablink_core.errors import LablinkError
from lablink_core.fleet.base import LogCallback
from lablink_core.fleet.terraform import (
    TerraformError,
    TerraformEvent,
    TerraformProgress,
    TerraformRunner,
)
from lablink_core.validation import validate_hostname

if TYPE_CHECKING:
    from lablink_core.services import Services

log = logging.getLogger(__name__)

CLIENT_CONFIG_DIR = Path(__file__).resolve().parents[2] / "terraform" / "client"
STATE_FILE = "terraform.tfstate"
INSTANCE_ADDRESS = 'aws_instance.client["'
PLUGIN_DIR_VARIABLE = "LABLINK_TF_PLUGIN_DIR"
_KEY_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")
_PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy")
_COUNTED_KINDS = ("apply_start", "apply_progress", "apply_complete", "apply_errored")

Change = Callable[[set[str]], set[str]]
"""How an operation turns the current set of VM names into the wanted one."""


class AwsProviderError(LablinkError):
    """Terraform failed; the message is Terraform's own errors, for a person."""

    code = "aws_provider_error"


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


def state_instance_names(state_file: Path) -> set[str]:
    """The names of the client instances a Terraform state file records (tainted included:
    they exist in AWS until an apply replaces them)."""
    try:
        text = state_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return set()
    state = json.loads(text) if text.strip() else {}
    names: set[str] = set()
    for resource in state.get("resources", []):
        if (
            resource.get("mode") == "managed"
            and resource.get("type") == "aws_instance"
            and resource.get("name") == "client"
            and "module" not in resource
        ):
            keys = (entry.get("index_key") for entry in resource.get("instances", []))
            names.update(key for key in keys if isinstance(key, str))
    return names


class _ProgressRelay:
    """Turns Terraform events into ``log(line, done)``: done counts the instances created
    or destroyed so far; change lines carry Terraform's running counts."""

    def __init__(self, log: LogCallback) -> None:
        self._log = log
        self.done = 0

    def __call__(self, event: TerraformEvent, progress: TerraformProgress) -> None:
        is_instance = (event.resource or "").startswith(INSTANCE_ADDRESS)
        if event.kind == "apply_complete" and is_instance:
            self.done += 1
        if not event.message or event.kind == "version":
            return
        line = event.message
        if event.kind in _COUNTED_KINDS:
            line += (
                f" ({progress.created} created, {progress.destroyed} destroyed"
                f" of {progress.planned} planned)"
            )
        self._log(line, self.done)


class AwsProvider:
    """Client VMs on EC2 through Terraform (see the module's docstring)."""

    name = "aws"

    def __init__(
        self,
        *,
        runner: TerraformRunner,
        credentials_for: Callable[[Sequence[str]], Mapping[str, str]],
        config: LablinkConfig,
        allocator_url: str,
        deployment: str | None = None,
        env_source: Callable[[], Mapping[str, str]] | None = None,
    ) -> None:
        # Called before each operation, so keys saved on the dashboard apply without a restart.
        self._env_source = env_source
        self._runner = runner
        # The VMs' current credentials by name, issuing those that have none.
        self._credentials_for = credentials_for
        self.allocator_url = allocator_url.rstrip("/")
        self.deployment = deployment or deployment_name(config)
        self._config = config
        self._lock = threading.Lock()
        self._desired = self.instances()

    def _settings(self) -> dict[str, object]:
        # Read at each apply: the admin may change the machine settings (of an empty fleet).
        machine = self._config.machine
        return {
            "region": self._config.app.region,
            "machine_type": machine.machine_type,
            "ami_id": machine.ami_id,
            "client_image": machine.image,
            "repository": machine.repository or "",
            "deployment_name": self.deployment,
        }

    @property
    def work_dir(self) -> Path:
        """Where Terraform's copy of the config and its state live."""
        return self._runner.work_dir

    @property
    def desired(self) -> set[str]:
        """The VM names of the last apply (or of the state, before any)."""
        return set(self._desired)

    # FleetProvider -------------------------------------------------------------------

    def create(self, hostnames: Sequence[str], log: LogCallback) -> None:
        names = {validate_hostname(h) for h in hostnames}
        self._apply(lambda current: current | names, "create", log)

    def delete(self, hostnames: Sequence[str], log: LogCallback) -> None:
        names = set(hostnames)
        self._apply(lambda current: current - names, "delete", log)

    def delete_all(self, log: LogCallback) -> None:
        with self._lock:
            current = self._refresh()
            try:
                self._runner.destroy(self.variables(current), _ProgressRelay(log))
            except TerraformError as error:
                raise self._failure("destroy", error) from error
            finally:
                self._refresh()

    def instances(self) -> set[str]:
        return state_instance_names(self.work_dir / STATE_FILE)

    def close(self) -> list[str]:
        """Nothing to stop: EC2 instances outlive the server, by design."""
        return []

    # Terraform -----------------------------------------------------------------------

    def variables(self, names: set[str]) -> dict[str, object]:
        """Every Terraform variable for a fleet of ``names`` (credentials included)."""
        ordered = sorted(names)
        return {
            **self._settings(),
            "allocator_url": self.allocator_url,
            "vm_names": ordered,
            "vm_credentials": dict(self._credentials_for(ordered)),
        }

    def _apply(self, change: Change, verb: str, log: LogCallback) -> None:
        with self._lock:
            wanted = change(self._refresh())
            relay = _ProgressRelay(log)
            try:
                outputs = self._runner.apply(self.variables(wanted), relay)
            except TerraformError as error:
                self._refresh()
                raise self._failure(verb, error) from error
            vms = outputs.get("vms")
            self._desired = set(vms) if isinstance(vms, dict) else self.instances()
            log(f"the AWS fleet has {len(self._desired)} VMs", relay.done)

    def _refresh(self) -> set[str]:
        if self._env_source is not None:
            self._runner.set_env(self._env_source())
        self._desired = self.instances()
        return set(self._desired)

    def _failure(self, verb: str, error: TerraformError) -> AwsProviderError:
        log.warning("terraform failed to %s VMs in %s: %s", verb, self.work_dir, error.message)
        return AwsProviderError(f"Terraform could not {verb} the AWS VMs: {error.message}")


def loopback_url(url: str) -> bool:
    """Whether ``url`` points at this machine (no EC2 VM could reach it)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_aws_provider(
    config: LablinkConfig,
    services: Services,
    *,
    allocator_url: str,
    data_dir: Path,
    aws_env: Mapping[str, str] | None = None,
    plugin_dir: Path | None = None,
    source_dir: Path | None = None,
) -> AwsProvider:
    """The provider of a deployment: state in ``<data_dir>/terraform/<deployment>/``, AWS
    settings from :func:`aws_environment` unless ``aws_env`` is given, the provider mirror
    from ``plugin_dir`` or ``$LABLINK_TF_PLUGIN_DIR`` (else terraform init downloads it)."""
    if loopback_url(allocator_url):
        log.warning("AWS VMs cannot reach %s: set app.public_url", allocator_url)
    deployment = deployment_name(config)
    work_dir = state_dir(data_dir, deployment)
    work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # the state is sensitive
    configured_mirror = os.environ.get(PLUGIN_DIR_VARIABLE)
    mirror = plugin_dir or (Path(configured_mirror) if configured_mirror else None)
    configured_source = config.fleet.terraform_dir
    runner = TerraformRunner(
        source_dir=source_dir
        or (Path(configured_source) if configured_source else CLIENT_CONFIG_DIR),
        work_dir=work_dir,
        env=dict(aws_env) if aws_env is not None else aws_environment(data_dir),
        plugin_dir=mirror,
        parallelism=int(config.fleet.terraform_parallelism),
    )
    enrolment = services.enrolment
    return AwsProvider(
        runner=runner,
        credentials_for=lambda names: {n: enrolment.enrol(n, provider="aws") for n in names},
        config=config,
        allocator_url=allocator_url,
        deployment=deployment,
        env_source=None if aws_env is not None else (lambda: aws_environment(data_dir)),
    )
