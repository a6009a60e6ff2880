"""What terraform gets from the runner: its config files (mirrored into the work folder) and
its variables (as ``TF_VAR_`` values); and how the JSON it prints is read back."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from lablink_core.fleet.terraform_events import TerraformError

CONFIG_PATTERNS = ("*.tf", "*.tftpl")


def sync_config(
    source_dir: Path,
    work_dir: Path,
    generated: Mapping[str, bytes],
    settings: Mapping[str, str],
) -> str:
    """Mirror the config files of ``source_dir``, plus the ``generated`` ones (the backend
    override), into ``work_dir``; stale ones go. Returns a digest of the files and of the
    backend ``settings``: a change of either means terraform init must run again."""
    work_dir.mkdir(parents=True, exist_ok=True)
    sources = sorted({p for pattern in CONFIG_PATTERNS for p in source_dir.glob(pattern)})
    if not any(p.suffix == ".tf" for p in sources):
        raise TerraformError(f"no Terraform files in {source_dir}")
    files = {source.name: source.read_bytes() for source in sources}
    files.update(generated)
    digest = hashlib.sha256(json.dumps(dict(settings), sort_keys=True).encode())
    for name in sorted(files):
        content = files[name]
        digest.update(name.encode() + b"\0" + content + b"\0")
        target = work_dir / name
        if not target.is_file() or target.read_bytes() != content:
            target.write_bytes(content)
    for pattern in CONFIG_PATTERNS:
        for stale in work_dir.glob(pattern):
            if stale.name not in files:
                stale.unlink()
    return digest.hexdigest()


def encode_variable(value: object) -> str:
    """A TF_VAR_ value: strings as they are, everything else as JSON (valid HCL)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, default=_json_default)


def _json_default(value: object) -> object:
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"cannot pass {type(value).__name__} to Terraform")


def leaf_strings(value: object) -> Iterator[str]:
    """Every string inside a variable's value (what to redact when it is a secret)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from leaf_strings(item)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from leaf_strings(item)


def json_value(text: str, what: str) -> object:
    """The JSON document a command printed (anything before its first bracket skipped)."""
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    try:
        value, _ = json.JSONDecoder().raw_decode(text, min(starts)) if starts else (None, 0)
    except ValueError:
        value = None
    if value is None:
        raise TerraformError(f"{what} printed no JSON: {text.strip()[-500:]}", log=text)
    return value


def json_object(text: str, what: str) -> dict[str, Any]:
    """The JSON object a command printed; anything else is a TerraformError."""
    value = json_value(text, what)
    if not isinstance(value, dict):
        raise TerraformError(f"{what} printed no JSON object: {text.strip()[-500:]}", log=text)
    return value
