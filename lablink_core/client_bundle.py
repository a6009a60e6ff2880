"""``lablink-client.pyz``: the VM agent as one file any Python 3.8+ can run.

Only what the agent imports goes in: lablink_core/client/**, the three core modules it uses
(crd, errors, validation) and a minimal lablink_core/__init__.py, so a bring-your-own
machine needs neither this project's dependencies nor its Python version. The archive is
built in memory once per process, reproducibly (fixed timestamps, sorted names), so every
server process serves the same bytes under the same ETag.

Also runnable: ``python -m lablink_core.client_bundle OUT.pyz`` writes it (the client image
builds its copy this way). Standard library only, and Python 3.8 syntax, for that reason.
"""

from __future__ import annotations

import functools
import hashlib
import io
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

PACKAGE_DIR: Final = Path(__file__).resolve().parent
CORE_MODULES: Final = ("crd.py", "errors.py", "validation.py")
SHEBANG: Final = b"#!/usr/bin/env python3\n"
# Zip entries carry a timestamp; a fixed one makes the archive depend on the sources only.
_TIMESTAMP: Final = (2020, 1, 1, 0, 0, 0)

_PACKAGE_INIT: Final = '''"""LabLink's VM agent, bundled: only the modules the agent needs."""
'''

_MAIN: Final = """import sys

from lablink_core.client.__main__ import main

sys.exit(main())
"""


@dataclass(frozen=True)
class ClientBundle:
    data: bytes
    sha256: str
    files: tuple[str, ...]


def bundled_sources(package_dir: Path = PACKAGE_DIR) -> dict[str, bytes]:
    """Archive name -> contents, for every file the bundle holds."""
    sources = {"__main__.py": _MAIN.encode(), "lablink_core/__init__.py": _PACKAGE_INIT.encode()}
    for name in CORE_MODULES:
        sources[f"lablink_core/{name}"] = (package_dir / name).read_bytes()
    client = package_dir / "client"
    for path in sorted(client.rglob("*.py")):
        if "__pycache__" not in path.parts:
            sources[path.relative_to(package_dir.parent).as_posix()] = path.read_bytes()
    return sources


def build_bundle(package_dir: Path = PACKAGE_DIR) -> ClientBundle:
    buffer = io.BytesIO()
    sources = bundled_sources(package_dir)
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(sources):
            entry = zipfile.ZipInfo(name, date_time=_TIMESTAMP)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, sources[name])
    # A zip is read from its end, so a shebang line in front keeps it valid (as zipapp does).
    data = SHEBANG + buffer.getvalue()
    return ClientBundle(data, hashlib.sha256(data).hexdigest(), tuple(sorted(sources)))


@functools.lru_cache(maxsize=1)
def client_bundle() -> ClientBundle:
    """The bundle of this installation's sources, built on first use."""
    return build_bundle()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m lablink_core.client_bundle OUT.pyz", file=sys.stderr)
        return 2
    target = Path(args[0])
    target.write_bytes(client_bundle().data)
    target.chmod(0o755)
    return 0


if __name__ == "__main__":
    sys.exit(main())
