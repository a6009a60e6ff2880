"""The client zipapp's contents, and the client's Python 3.8 compatibility."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

from lablink_core.client_bundle import SHEBANG, build_bundle, client_bundle, main

REPO = Path(__file__).resolve().parents[2]
# Everything the bundle carries, plus the builder itself (the client image runs it).
CLIENT_FILES = [
    "lablink_core/client",
    "lablink_core/crd.py",
    "lablink_core/errors.py",
    "lablink_core/validation.py",
    "lablink_core/client_bundle.py",
]


def venv_tool(name: str) -> str:
    """A linter installed by the test extras, next to this interpreter (never skipped)."""
    tool = Path(sys.executable).parent / name
    assert tool.exists(), f"{name} is missing: install the test extras (pip install -e .[test])"
    return str(tool)


def test_the_client_needs_nothing_newer_than_python_3_8() -> None:
    done = subprocess.run(
        [venv_tool("vermin"), "-t=3.8-", "--violations", "--no-tips", *CLIENT_FILES],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_bundle_holds_only_the_client_and_the_modules_it_imports() -> None:
    bundle = client_bundle()
    assert bundle.data.startswith(SHEBANG)
    with zipfile.ZipFile(io.BytesIO(bundle.data)) as archive:
        names = archive.namelist()
        init = archive.read("lablink_core/__init__.py").decode()
    client = sorted(
        p.relative_to(REPO).as_posix() for p in (REPO / "lablink_core" / "client").glob("*.py")
    )
    expected = ["__main__.py", "lablink_core/__init__.py", *client]
    expected += ["lablink_core/crd.py", "lablink_core/errors.py", "lablink_core/validation.py"]
    assert sorted(names) == sorted(expected) == list(bundle.files)
    assert "import" not in init  # minimal: nothing of the server is pulled in


def test_bundle_is_reproducible_and_cached() -> None:
    assert build_bundle().data == build_bundle().data
    assert client_bundle() is client_bundle()


def test_every_bundled_module_imports_from_the_archive_alone(tmp_path: Path) -> None:
    target = tmp_path / "lablink-client.pyz"
    assert main([str(target)]) == 0
    modules = [n[:-3].replace("/", ".") for n in client_bundle().files if n.startswith("lablink")]
    code = "import importlib, sys\nfor name in sys.argv[1:]: importlib.import_module(name)\n"
    # -S -I: no site-packages and no current folder, so only the archive can supply them.
    done = subprocess.run(
        [sys.executable, "-S", "-I", "-c", f"import sys; sys.path[:0] = [{str(target)!r}]\n{code}"]
        + [m.removesuffix(".__init__") for m in modules],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    help_text = subprocess.run(
        [sys.executable, "-S", "-I", str(target), "--help"], capture_output=True, text=True
    )
    assert help_text.returncode == 0 and "lablink-client" in help_text.stdout
