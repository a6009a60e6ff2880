"""The settings of the allocator's core: database, client machines, the server, fleets.

Each section is a ``param.Parameterized`` whose parameters carry their own documentation;
``lablink config show`` prints them and ``lablink config validate`` checks them.
"""

from __future__ import annotations

from typing import Any

import param

from lablink_core.prices import checked_price

IDENT = r"^[a-z_][a-z0-9_]{0,62}$"
DEV_ADMIN_PASSWORD_HINT = "generated at first start and printed once"  # noqa: S105


class Section(param.Parameterized):
    """A group of settings. (Gives ``param``'s untyped constructor a typed signature.)"""

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)  # type: ignore[no-untyped-call]


class DatabaseConfig(Section):
    """Where the VM table lives. Leave ``host`` and ``url`` empty to run a private PostgreSQL."""

    url = param.String(
        default=None,
        allow_None=True,
        doc="Full SQLAlchemy/libpq URL (the DATABASE_URL variable); overrides the other db keys.",
    )
    dbname = param.String(default="lablink", regex=IDENT, doc="Database name.")
    user = param.String(default="lablink", regex=IDENT, doc="Role the allocator connects as.")
    password = param.String(default="", doc="Password of that role (empty: trust or peer auth).")
    host = param.String(
        default=None,
        allow_None=True,
        doc="Server host. Empty with no url: the allocator starts a private PostgreSQL.",
    )
    port = param.Integer(default=5432, bounds=(1, 65535), doc="Server TCP port.")
    table_name = param.String(default="vms", regex=IDENT, doc="Name of the VM table.")
    message_channel = param.String(
        default="vm_updates", regex=IDENT, doc="LISTEN/NOTIFY channel for VM changes."
    )
    pool_size = param.Integer(
        default=10, bounds=(1, 200), doc="Connections kept open per process for requests."
    )
    loop_connections = param.Integer(
        default=8,
        bounds=(0, 200),
        doc="Connections per process on which its event loop runs the hottest single "
        "statements itself (a researcher's first claim), with no thread hop; opened on demand. "
        "0 runs them on the request pool's threads instead.",
    )


class MachineConfig(Section):
    """What a client VM is: the seed's ``machine.*`` keys."""

    machine_type = param.String(default="g4dn.xlarge", doc="EC2 instance type of client VMs.")
    ami_id = param.String(
        default="ami-067cc81f948e50e06",
        regex=r"^ami-[0-9a-f]{8,17}$",
        doc="AMI of client VMs (Ubuntu 20.04 with Docker).",
    )
    image = param.String(
        default="ghcr.io/talmolab/lablink-allocator-client:0.2.0",
        doc="Container image the client VMs run: build it from client-image/ and push it "
        "to your registry (docs/vm-clients.md), or name a CRD-era LabLink image "
        "(then set machine.client to original).",
    )
    repository = param.String(
        default=None, allow_None=True, doc="Optional Git repository the client VMs clone."
    )
    client: param.Selector[str] = param.Selector(
        default="lablink",
        objects=["lablink", "original"],
        doc="Which client the image runs: 'lablink' (this project's, reusable across "
        "researchers) or 'original' (a CRD-era LabLink image; it serves one researcher, "
        "so its VMs are recycled on release, never reused).",
    )


class AppConfig(Section):
    """The allocator server itself."""

    mode: param.Selector[str] = param.Selector(
        default="local",
        objects=["local", "production"],
        doc="'local' may generate an admin password; 'production' requires one to be set.",
    )
    admin_user = param.String(default="admin", regex=r"^[A-Za-z0-9_.@-]{1,64}$", doc="Admin login.")
    admin_password = param.String(
        default=None,
        allow_None=True,
        doc=f"Admin password. Required in production; in local mode {DEV_ADMIN_PASSWORD_HINT}.",
    )
    secret_key = param.String(
        default=None,
        allow_None=True,
        doc="Secret for VM credentials and cookies. Empty: generated and kept in the database.",
    )
    host = param.String(default="0.0.0.0", doc="Address the server listens on.")  # noqa: S104
    port = param.Integer(default=5000, bounds=(1, 65535), doc="Port of the dashboard and API.")
    processes = param.String(
        default="1",
        regex=r"^(auto|[1-9][0-9]?)$",
        doc="Server processes sharing the port ('auto': one per core); each has its own "
        "database pool, LISTEN connection and waiting VMs (`lablink serve --processes`).",
    )
    public_url = param.String(
        default=None,
        allow_None=True,
        doc="URL that VMs use to reach the allocator (default http://<host>:<port>).",
    )
    region = param.String(default="us-east-1", regex=r"^[a-z]{2}(-[a-z]+)+-\d$", doc="AWS region.")
    data_dir = param.String(
        default=None,
        allow_None=True,
        doc="Folder for the private database, fleet state and credentials (default per user).",
    )
    vm_wait_seconds = param.Number(
        default=60.0, bounds=(1.0, 600.0), doc="How long /vm_startup holds a VM before a 204."
    )
    unresponsive_after_seconds = param.Number(
        default=120.0, bounds=(1.0, 86400.0), doc="Silence after which a VM shows as unresponsive."
    )
    original_client_wait_seconds = param.Number(
        default=3000.0,
        bounds=(1.0, 86400.0),
        doc="How long /vm_startup holds an original LabLink client (it waits up to 7 days, "
        "and retries only after 10-15 s): under an AWS load balancer's 4000 s idle limit.",
    )
    allowed_origins = param.List(
        default=[],
        item_type=str,
        doc="Origins (scheme://host:port) whose pages may open the dashboard's websockets; "
        "the public URL's origin and localhost are always allowed.",
    )
    trusted_proxies = param.List(
        default=[],
        item_type=str,
        doc="Addresses or CIDRs of reverse proxies whose X-Forwarded-For is believed "
        "(rate limits and logs then use the client's address).",
    )
    ssl_certfile = param.String(
        default=None, allow_None=True, doc="TLS certificate (PEM); with ssl_keyfile, serve https."
    )
    ssl_keyfile = param.String(
        default=None, allow_None=True, doc="TLS private key (PEM) of ssl_certfile."
    )
    max_body_bytes = param.Integer(
        default=1 << 20,
        bounds=(1024, 1 << 30),
        doc="Largest request body the server reads; larger ones are refused before buffering.",
    )
    max_public_sessions = param.Integer(
        default=2000,
        bounds=(1, 1000000),
        doc="Researcher pages open at once per process; more are asked to come back later.",
    )
    release_policy: param.Selector[str] = param.Selector(
        default="reuse",
        objects=["reuse", "recycle"],
        doc="What a released VM becomes: available again, or marked for recycling.",
    )


class Prices(param.Dict[dict[str, Any]]):
    """A ``param.Dict`` of instance type -> US dollars per hour, each price checked."""

    def _validate(self, val: Any) -> None:
        super()._validate(val)  # type: ignore[no-untyped-call]
        for machine_type, price in (val or {}).items():
            checked_price(machine_type, price)


class FleetConfig(Section):
    """How VMs are launched and destroyed."""

    provider: param.Selector[str] = param.Selector(
        default="auto",
        objects=["auto", "local", "aws"],
        doc="'local': VM processes on this machine; 'aws': Terraform; 'auto': aws if keys are set.",
    )
    max_instances = param.Integer(default=500, bounds=(1, 10000), doc="Largest fleet allowed.")
    hourly_prices = Prices(
        default={},
        doc="US dollars per hour by instance type, added to or overriding the built-in table "
        "of lablink_core.prices (for the admin pages' cost estimate), e.g. "
        "{g4dn.xlarge: 0.60}.",
    )
    terraform_parallelism = param.Integer(
        default=50, bounds=(1, 500), doc="Terraform -parallelism for applies."
    )
    name_prefix = param.String(
        default="lablink-vm", regex=r"^[a-z][a-z0-9-]{0,30}$", doc="Prefix of VM hostnames."
    )
    local_heartbeat_seconds = param.Number(
        default=15.0,
        bounds=(0.2, 600.0),
        doc="How often local VM processes report (their status, desktop and GPU activity).",
    )
    terraform_backend: param.Selector[str] = param.Selector(
        default="local",
        objects=["local", "pg"],
        doc="Where Terraform keeps the client fleet's state: 'local' (a folder in data_dir) or "
        "'pg' (a schema of the allocator's own PostgreSQL, shared by allocators on several "
        "hosts, with Terraform's locking).",
    )
    terraform_dir = param.String(
        default=None,
        allow_None=True,
        doc="Folder of the client VMs' Terraform configuration (default: terraform/client "
        "of this checkout).",
    )
