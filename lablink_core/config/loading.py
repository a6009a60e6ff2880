"""The allocator's configuration: a tree of documented ``param`` objects.

Values come from, in order of precedence: environment variables (``DATABASE_URL`` and
``LABLINK_<SECTION>_<KEY>``), a YAML file, and the defaults below. Every bad value is
reported with the key it belongs to, all at once, so a person fixes a file in one pass.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import param
import yaml

from lablink_core.config.sections import (
    AppConfig,
    DatabaseConfig,
    FleetConfig,
    MachineConfig,
    Section,
)
from lablink_core.config.workshop import AccessConfig, HealthConfig, SessionConfig, WaitlistConfig

SECRET_KEYS = frozenset(
    {
        "db.password",
        "db.url",
        "app.admin_password",
        "app.secret_key",
        "access.event_code",
        "access.oidc_client_secret",
    }
)


class ConfigError(ValueError):
    """One or more configuration values are wrong; ``problems`` lists one line per value."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


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
    access = param.ClassSelector(
        class_=AccessConfig, default=AccessConfig(), doc="Who may take a VM."
    )
    health = param.ClassSelector(
        class_=HealthConfig, default=HealthConfig(), doc="Fleet health and healing."
    )
    session = param.ClassSelector(
        class_=SessionConfig, default=SessionConfig(), doc="Session limits and idle reclaim."
    )
    waitlist = param.ClassSelector(
        class_=WaitlistConfig, default=WaitlistConfig(), doc="The queue for a full fleet."
    )

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
    "access": AccessConfig,
    "health": HealthConfig,
    "session": SessionConfig,
    "waitlist": WaitlistConfig,
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
    if isinstance(parameter, param.List):
        return [item.strip() for item in text.split(",") if item.strip()]
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
    access: AccessConfig = config.access
    problems = []
    if app.mode == "production" and not app.admin_password:
        problems.append(
            "app.admin_password: required when app.mode is production "
            "(set it in the file or as LABLINK_APP_ADMIN_PASSWORD)"
        )
    if app.admin_password is not None and 0 < len(app.admin_password) < 8:
        problems.append("app.admin_password: must be at least 8 characters")
    if bool(app.ssl_certfile) != bool(app.ssl_keyfile):
        problems.append("app.ssl_certfile and app.ssl_keyfile: set both, or neither")
    for entry in app.trusted_proxies:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            problems.append(f"app.trusted_proxies: {entry!r} is not an address or CIDR block")
    if access.mode == "code" and not (access.event_code or "").strip():
        problems.append("access.event_code: required when access.mode is code")
    if access.mode == "signin" and not (access.oidc_issuer and access.oidc_client_id):
        problems.append(
            "access.oidc_issuer and access.oidc_client_id: required when access.mode is signin"
        )
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
