"""What a terraform process is given, and what is hidden from everything it prints.

Its environment starts nearly empty (PATH, HOME, TMPDIR): the allocator's own environment
holds its database URL and keys that no Terraform provider needs. Variables reach terraform
only as ``TF_VAR_<name>`` there, never on its command line (which ``ps`` shows) or in a file.
The secrets to redact are the values of settings and variables whose names say secret.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from lablink_core.fleet.terraform_backend import TerraformBackend
from lablink_core.fleet.terraform_events import Redactor
from lablink_core.fleet.terraform_files import encode_variable, leaf_strings

_BASE_ENV_KEYS = ("PATH", "HOME", "TMPDIR")
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_SECRET_NAME = re.compile(r"password|secret|token|credential|private|conn_str", re.IGNORECASE)


def command_environment(
    settings: Mapping[str, str], backend: TerraformBackend, variables: Mapping[str, object]
) -> dict[str, str]:
    """The environment of one terraform command: the base, ``settings`` (AWS), the backend's
    connection, automation switches, then ``variables`` as TF_VAR_ entries (None: unset)."""
    env = {key: os.environ[key] for key in _BASE_ENV_KEYS if key in os.environ}
    env.setdefault("PATH", os.defpath)
    env.update(settings)
    env.update(backend.env())
    env.update(TF_IN_AUTOMATION="1", TF_INPUT="0", CHECKPOINT_DISABLE="1")
    for name, value in variables.items():
        if not _VARIABLE_NAME.match(name):
            raise ValueError(f"invalid Terraform variable name: {name!r}")
        if value is not None:
            env[f"TF_VAR_{name}"] = encode_variable(value)
    return env


def secret_redactor(
    settings: Mapping[str, str], backend: TerraformBackend, variables: Mapping[str, object]
) -> Redactor:
    """Hides the secret settings, the backend's connection and every string inside a
    variable whose name says secret."""
    secrets = [value for key, value in settings.items() if _SECRET_NAME.search(key)]
    secrets.extend(backend.secrets())
    for name, value in variables.items():
        if _SECRET_NAME.search(name):
            secrets.extend(leaf_strings(value))
    return Redactor(secrets)
