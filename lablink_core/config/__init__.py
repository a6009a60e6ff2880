"""The allocator's configuration: a tree of documented ``param`` objects.

Values come from, in order of precedence: environment variables (``DATABASE_URL`` and
``LABLINK_<SECTION>_<KEY>``), a YAML file, and the defaults. Every bad value is reported
with the key it belongs to, all at once, so a person fixes a file in one pass.
"""

from lablink_core.config.loading import (
    SECRET_KEYS,
    ConfigError,
    LablinkConfig,
    database_url,
    default_data_dir,
    load_config,
)
from lablink_core.config.sections import (
    DEV_ADMIN_PASSWORD_HINT,
    AppConfig,
    DatabaseConfig,
    FleetConfig,
    MachineConfig,
    Section,
)
from lablink_core.config.workshop import (
    ACCESS_MODES,
    AccessConfig,
    HealthConfig,
    SessionConfig,
    WaitlistConfig,
)

__all__ = [
    "ACCESS_MODES",
    "DEV_ADMIN_PASSWORD_HINT",
    "SECRET_KEYS",
    "AccessConfig",
    "AppConfig",
    "ConfigError",
    "DatabaseConfig",
    "FleetConfig",
    "HealthConfig",
    "LablinkConfig",
    "MachineConfig",
    "Section",
    "SessionConfig",
    "WaitlistConfig",
    "database_url",
    "default_data_dir",
    "load_config",
]
