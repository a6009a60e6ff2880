"""The AWS provider: client VMs as EC2 instances, kept by Terraform (``terraform/client``).

Every change is one ``terraform apply`` of the whole fleet: the provider reads the set of VM
names from the state and applies ``vm_names`` = that set plus or minus the VMs asked for, so
Terraform creates or destroys exactly the difference (each VM is keyed by its name).
``delete_all`` is ``terraform destroy``: the instances, then the security group they share.
The healer's ``reboot`` is EC2 RebootInstances (boto3); its ``replace`` is ``apply
-replace`` of that one instance (``-target``-ed, so no other VM is touched).

The state lives in ``<data_dir>/terraform/<deployment>/`` (backend ``local``) or in a schema
of the allocator's PostgreSQL (``fleet.terraform_backend: pg``; see
:mod:`lablink_core.fleet.terraform_backend`), read through Terraform. It is re-read at the
start of every operation: the Fleet lock serialises operations across server processes and
hosts, so the state (not a process's memory) is what each of them starts from.

VMs get no credential from here. Each VM being created or replaced gets a one-time
enrolment token (``issue_enrolment``, which also revokes a replaced VM's credential) in the
sensitive ``vm_enrolment_tokens`` variable; the VM exchanges it at first boot. VMs that
already exist get :data:`PLACEHOLDER_TOKEN` (``ignore_changes = [user_data]`` keeps them as
they are). Should Terraform create a VM that was given the placeholder (it had vanished from
AWS behind Terraform's back), that VM is replaced at once with a token of its own. Secrets
reach Terraform only through its environment (``TF_VAR_*``, ``AWS_*``, ``PG_CONN_STR``):
never argv, a tfvars file or a log line.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lablink_core.config import LablinkConfig
from lablink_core.errors import LablinkError, NotFound
from lablink_core.fleet.aws_deployment import (
    CLIENT_CONFIG_DIR,
    aws_environment,
    client_runner,
    deployment_name,
    loopback_url,
    state_dir,
)
from lablink_core.fleet.aws_progress import ProgressRelay, instance_address
from lablink_core.fleet.base import LogCallback
from lablink_core.fleet.ec2 import Ec2Factory, ec2_client
from lablink_core.fleet.state import FleetState, fleet_state, read_state_file
from lablink_core.fleet.terraform import (
    STATE_FILE,
    TerraformError,
    TerraformRunner,
)
from lablink_core.fleet.terraform_backend import TerraformBackend
from lablink_core.validation import validate_hostname

if TYPE_CHECKING:
    from lablink_core.services import Services

log = logging.getLogger(__name__)

__all__ = [
    "CLIENT_CONFIG_DIR",
    "AwsProvider",
    "AwsProviderError",
    "aws_environment",
    "client_runner",
    "deployment_name",
    "loopback_url",
    "make_aws_provider",
    "state_dir",
]

PLACEHOLDER_TOKEN = "existing-vm"  # noqa: S105 (not a secret: what VMs that exist are given)

Change = Callable[[set[str]], set[str]]
"""How an operation turns the current set of VM names into the wanted one."""
IssueEnrolment = Callable[[Sequence[str]], Mapping[str, str]]
"""One-time enrolment tokens for these VMs (``services.enrolment.issue_enrolment``)."""


class AwsProviderError(LablinkError):
    """Terraform or EC2 failed; the message is their own errors, for a person."""

    code = "aws_provider_error"


class AwsProvider:
    """Client VMs on EC2 through Terraform (see the module's docstring)."""

    name = "aws"

    def __init__(
        self,
        *,
        runner: TerraformRunner,
        issue_enrolment: IssueEnrolment,
        config: LablinkConfig,
        allocator_url: str,
        deployment: str | None = None,
        env_source: Callable[[], Mapping[str, str]] | None = None,
        ec2_factory: Ec2Factory = ec2_client,
    ) -> None:
        # Called before each operation, so keys saved on the dashboard apply without a restart.
        self._env_source = env_source
        self._runner = runner
        self._issue_enrolment = issue_enrolment
        self._ec2_factory = ec2_factory
        self.allocator_url = allocator_url.rstrip("/")
        self.deployment = deployment or deployment_name(config)
        self._config = config
        self._lock = threading.Lock()

    def _settings(self) -> dict[str, object]:
        # Read at each apply: the admin may change the machine settings (new VMs get them).
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
        """Where Terraform's copy of the config (and a local state) live."""
        return self._runner.work_dir

    @property
    def backend(self) -> TerraformBackend:
        return self._runner.backend

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
                self._runner.destroy(self.variables(current.names), ProgressRelay(log))
            except TerraformError as error:
                raise self._failure("destroy", error) from error

    def instances(self) -> set[str]:
        return set(self._state().names)

    def close(self) -> list[str]:
        """Nothing to stop: EC2 instances outlive the server, by design."""
        return []

    # HealingProvider -----------------------------------------------------------------

    def reboot(self, hostname: str, log: LogCallback) -> None:
        """EC2 RebootInstances: the same instance (and disk) starts again."""
        with self._lock:
            instance_id = self._instance_id(self._refresh(), hostname)
            log(f"rebooting {hostname} ({instance_id})", 0)
            ec2 = self._ec2_factory(self._runner.env, str(self._config.app.region))
            try:
                ec2.reboot_instances(InstanceIds=[instance_id])
            except Exception as error:  # botocore's ClientError, or no connection at all
                raise AwsProviderError(f"EC2 could not reboot {hostname}: {error}") from error
            log(f"EC2 accepted the reboot of {hostname}", 1)

    def replace(self, hostname: str, log: LogCallback) -> None:
        """A new instance under the same name (and row), with a fresh enrolment token; the
        old one is destroyed. Only this instance is planned (``-target``)."""
        name = validate_hostname(hostname)

        def keep(current: set[str]) -> set[str]:
            if name not in current:
                raise NotFound(f"Terraform has no VM named {name} to replace")
            return current

        self._apply(keep, "replace", log, replacing=[name])

    # Terraform -----------------------------------------------------------------------

    def variables(self, names: Iterable[str], fresh: Iterable[str] = ()) -> dict[str, object]:
        """Every Terraform variable for a fleet of ``names``: new enrolment tokens for the
        ``fresh`` ones (to be created or replaced), the placeholder for the others."""
        ordered = sorted(set(names))
        wanted = sorted(set(fresh) & set(ordered))
        tokens = dict(self._issue_enrolment(wanted)) if wanted else {}
        return {
            **self._settings(),
            "allocator_url": self.allocator_url,
            "vm_names": ordered,
            "vm_enrolment_tokens": {n: tokens.get(n, PLACEHOLDER_TOKEN) for n in ordered},
        }

    def _apply(
        self, change: Change, verb: str, log: LogCallback, *, replacing: Sequence[str] = ()
    ) -> None:
        with self._lock:
            state = self._refresh()
            wanted = change(set(state.names))
            # New names, tainted instances (any apply replaces them) and replacements.
            fresh = (wanted - state.names) | (state.tainted & wanted) | set(replacing)
            addresses = [instance_address(name) for name in replacing]
            relay = ProgressRelay(log, creations_only=bool(replacing))
            try:
                outputs = self._runner.apply(
                    self.variables(wanted, fresh), relay, replace=addresses, targets=addresses
                )
                stranded = relay.created - fresh
                if stranded:
                    self._give_tokens(stranded, wanted, relay)
            except TerraformError as error:
                raise self._failure(verb, error) from error
            vms = outputs.get("vms")
            count = len(vms) if isinstance(vms, dict) else len(wanted)
            log(f"the AWS fleet has {count} VMs", relay.done)

    def _give_tokens(self, stranded: set[str], wanted: set[str], relay: ProgressRelay) -> None:
        """Replace VMs Terraform created with the placeholder token (they had gone from AWS
        unnoticed), so each boots with a token it can exchange."""
        names = sorted(stranded)
        message = f"{', '.join(names)} came back without an enrolment token; replacing them"
        relay.note(message)
        addresses = [instance_address(name) for name in names]
        variables = self.variables(wanted, stranded)
        self._runner.apply(variables, relay, replace=addresses, targets=addresses)

    def _state(self) -> FleetState:
        if self._runner.backend.shared:
            return fleet_state(self._runner.state())
        return fleet_state(read_state_file(self.work_dir / STATE_FILE))

    def _refresh(self) -> FleetState:
        if self._env_source is not None:
            self._runner.set_env(self._env_source())
        return self._state()

    def _instance_id(self, state: FleetState, hostname: str) -> str:
        instance_id = state.ids.get(hostname)
        if instance_id is None:
            raise NotFound(f"Terraform has no EC2 instance for VM {hostname}")
        return instance_id

    def _failure(self, verb: str, error: TerraformError) -> AwsProviderError:
        log.warning("terraform failed to %s VMs in %s: %s", verb, self.work_dir, error.message)
        return AwsProviderError(f"Terraform could not {verb} the AWS VMs: {error.message}")


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
    """The provider of a deployment on these services (see :func:`client_runner`)."""
    if loopback_url(allocator_url):
        log.warning("AWS VMs cannot reach %s: set app.public_url", allocator_url)
    runner = client_runner(
        config,
        data_dir,
        services.url,
        aws_env=aws_env,
        plugin_dir=plugin_dir,
        source_dir=source_dir,
    )
    return AwsProvider(
        runner=runner,
        issue_enrolment=services.enrolment.issue_enrolment,
        config=config,
        allocator_url=allocator_url,
        deployment=deployment_name(config),
        env_source=None if aws_env is not None else (lambda: aws_environment(data_dir)),
    )
