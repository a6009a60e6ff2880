"""The allocator's configuration: a tree of documented ``param`` objects.

Values come from, in order of precedence: environment variables (``DATABASE_URL`` and
``LABLINK_<SECTION>_<KEY>``), a YAML file, and the defaults below. Every bad value is
reported with the key it belongs to, all at once, so a person fixes a file in one pass.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import param
import yaml

_IDENT = r"^[a-z_][a-z0-9_]{0,62}$"
SECRET_KEYS = frozenset({"db.password", "db.url", "app.admin_password", "app.secret_key"})
DEV_ADMIN_PASSWORD_HINT = "generated at first start and printed once"  # noqa: S105


class ConfigError(ValueError):
    """One or more configuration values are wrong; ``problems`` lists one line per value."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


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
    dbname = param.String(default="lablink", regex=_IDENT, doc="Database name.")
    user = param.String(default="lablink", regex=_IDENT, doc="Role the allocator connects as.")
    password = param.String(default="", doc="Password of that role (empty: trust or peer auth).")
    host = param.String(
        default=None,
        allow_None=True,
        doc="Server host. Empty with no url: the allocator starts a private PostgreSQL.",
    )
    port = param.Integer(default=5432, bounds=(1, 65535), doc="Server TCP port.")
    table_name = param.String(default="vms", regex=_IDENT, doc="Name of the VM table.")
    message_channel = param.String(
        default="vm_updates", regex=_IDENT, doc="LISTEN/NOTIFY channel for VM changes."
    )
    pool_size = param.Integer(
        default=10, bounds=(1, 200), doc="Connections kept open per process for requests."
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
        default="ghcr.io/talmolab/lablink-client-base-image:latest",
        doc="Container image the client VMs run.",
    )
    repository = param.String(
        default=None, allow_None=True, doc="Optional Git repository the client VMs clone."
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
        default=120.0, bounds=(5.0, 86400.0), doc="Silence after which a VM shows as unresponsive."
    )
    release_policy: param.Selector[str] = param.Selector(
        default="reuse",
        objects=["reuse", "recycle"],
        doc="What a released VM becomes: available again, or marked for recycling.",
    )


class FleetConfig(Section):
    """How VMs are launched and destroyed."""

    provider: param.Selector[str] = param.Selector(
        default="auto",
        objects=["auto", "local", "aws"],
        doc="'local': VM processes on this machine; 'aws': Terraform; 'auto': aws if keys are set.",
    )
    max_instances = param.Integer(default=500, bounds=(1, 10000), doc="Largest fleet allowed.")
    terraform_parallelism = param.Integer(
        default=50, bounds=(1, 500), doc="Terraform -parallelism for applies."
    )
    name_prefix = param.String(
        default="lablink-vm", regex=r"^[a-z][a-z0-9-]{0,30}$", doc="Prefix of VM hostnames."
    )
    terraform_dir = param.String(
        default=None,
        allow_None=True,
        doc="Folder of the client VMs' Terraform configuration (default: terraform/client "
        "of this checkout).",
    )


class LablinkConfig(Section):
    """The whole configuration tree."""

    db = param.ClassSelector(
        class_=DatabaseConfig, default=DatabaseConfig(), doc="Database settings."
    )
    machine = param.ClassSelector(
        class_=MachineConfig, default=MachineConfig(), doc="Client VM settings."
    )
    app = param.ClassSelector(class_=AppConfig, default=AppConfig(), doc="Server settings.")
    fleet = param.ClassSelector(class_=FleetConfig, default=FleetConfig(), doc="Fleet settings.")

    def section(self, name: str) -> param.Parameterized:
        value: param.Parameterized = getattr(self, name)
        return value

    def items(self) -> Iterator[tuple[str, Any]]:
        """Every ``section.key`` with its value, in declaration order."""
        for name in _SECTIONS:
            section = self.section(name)
            for key in _keys(section):
                yield f"{name}.{key}", getattr(section, key)

    def masked(self) -> dict[str, dict[str, Any]]:
        """The effective configuration with secrets replaced, for printing."""
        out: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
        for dotted, value in self.items():
            section, key = dotted.split(".", 1)
            if dotted in SECRET_KEYS and value:
                value = "********"
            out[section][key] = value
        return out


_SECTIONS: dict[str, type[param.Parameterized]] = {
    "db": DatabaseConfig,
    "machine": MachineConfig,
    "app": AppConfig,
    "fleet": FleetConfig,
}


def _keys(section: param.Parameterized) -> list[str]:
    return [k for k in section.param if k != "name"]


def _coerce_text(parameter: param.Parameter[Any], text: str) -> Any:
    """Environment variables are text: turn them into the parameter's type."""
    if isinstance(parameter, param.Boolean):
        lowered = text.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"expected true or false, got {text!r}")
    if isinstance(parameter, param.Integer):
        return int(text)
    if isinstance(parameter, param.Number):
        return float(text)
    if parameter.allow_None and text == "":
        return None
    return text


def _describe(parameter: param.Parameter[Any]) -> str:
    kind = type(parameter).__name__.lower()
    bounds = getattr(parameter, "bounds", None)
    if isinstance(parameter, param.Selector):
        return f"one of {', '.join(map(str, parameter.objects))}"
    if bounds:
        return f"{kind} between {bounds[0]} and {bounds[1]}"
    return kind


def _apply(config: LablinkConfig, dotted: str, value: Any, problems: list[str]) -> None:
    section_name, _, key = dotted.partition(".")
    if section_name not in _SECTIONS:
        problems.append(
            f"{dotted}: unknown section {section_name!r} (known: {', '.join(_SECTIONS)})"
        )
        return
    section = config.section(section_name)
    if key not in _keys(section):
        known = ", ".join(_keys(section))
        problems.append(f"{dotted}: unknown key (known keys of {section_name}: {known})")
        return
    parameter = section.param[key]
    try:
        if isinstance(value, str) and not isinstance(parameter, param.String):
            value = _coerce_text(parameter, value)
        if isinstance(parameter, param.Integer) and isinstance(value, bool):
            raise ValueError("booleans are not integers")
        setattr(section, key, value)
    except (ValueError, TypeError) as error:
        problems.append(f"{dotted}: expected {_describe(parameter)}, got {value!r} ({error})")


def _flatten(document: object, problems: list[str]) -> dict[str, Any]:
    if document is None:
        return {}
    if not isinstance(document, Mapping):
        problems.append("the file must be a mapping of sections (db, machine, app, fleet)")
        return {}
    flat: dict[str, Any] = {}
    for section, body in document.items():
        if not isinstance(body, Mapping):
            problems.append(f"{section}: expected a mapping of keys, got {body!r}")
            continue
        for key, value in body.items():
            flat[f"{section}.{key}"] = value
    return flat


def _from_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``LABLINK_DB_TABLE_NAME`` -> ``db.table_name``; variables of other sections are not ours."""
    flat: dict[str, str] = {}
    if environ.get("DATABASE_URL"):
        flat["db.url"] = environ["DATABASE_URL"]
    for name, value in environ.items():
        if not name.startswith("LABLINK_"):
            continue
        section, _, key = name[len("LABLINK_") :].lower().partition("_")
        if section in _SECTIONS and key:
            flat[f"{section}.{key}"] = value
    return flat


def load_config(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> LablinkConfig:
    """Build the configuration from a YAML file (optional) and the environment."""
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    flat: dict[str, Any] = {}
    if path is not None:
        flat.update(_flatten(_read_yaml(Path(path), problems), problems))
    flat.update(_from_environment(environ))
    config = LablinkConfig()
    for dotted, value in flat.items():
        _apply(config, dotted, value, problems)
    problems.extend(_cross_checks(config))
    if problems:
        raise ConfigError(problems)
    return config


def _read_yaml(path: Path, problems: list[str]) -> object:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        problems.append(f"{path}: cannot read ({error.strerror})")
    except yaml.YAMLError as error:
        problems.append(f"{path}: not valid YAML ({error})")
    return None


def _cross_checks(config: LablinkConfig) -> list[str]:
    app: AppConfig = config.app
    problems = []
    if app.mode == "production" and not app.admin_password:
        problems.append(
            "app.admin_password: required when app.mode is production "
            "(set it in the file or as LABLINK_APP_ADMIN_PASSWORD)"
        )
    if app.admin_password is not None and 0 < len(app.admin_password) < 8:
        problems.append("app.admin_password: must be at least 8 characters")
    return problems


def database_url(db: DatabaseConfig) -> str | None:
    """The SQLAlchemy URL of the configured server, or None when a private one must run."""
    if db.url:
        url: str = db.url
        for old in ("postgres://", "postgresql://"):
            if url.startswith(old):
                return "postgresql+psycopg2://" + url[len(old) :]
        return url
    if db.host:
        from sqlalchemy.engine import URL

        return URL.create(
            "postgresql+psycopg2",
            username=db.user,
            password=db.password or None,
            host=db.host,
            port=db.port,
            database=db.dbname,
        ).render_as_string(hide_password=False)
    return None


def default_data_dir() -> Path:
    """Per-user data folder; as root, outside any home folder (the private server needs that)."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/lablink")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "lablink"
