"""The images' files, checked without Docker (it cannot build here): the allocator's
Dockerfile, .dockerignore, environment.yml and start.sh, and the client image's
(client-image/)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|ACCESS_KEY|PRIVATE", re.I)


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, continuation lines joined."""
    parsed: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # Docker drops comment lines, also inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        parsed.append((keyword.upper(), " ".join(arguments.split())))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return parsed


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return instructions(REPO / "Dockerfile")


def arguments(dockerfile: list[tuple[str, str]], keyword: str) -> list[str]:
    return [args for key, args in dockerfile if key == keyword]


def declared(dockerfile: list[tuple[str, str]], keyword: str) -> dict[str, str]:
    """Names and values of ARG or ENV instructions (``NAME=value`` forms)."""
    found: dict[str, str] = {}
    for args in arguments(dockerfile, keyword):
        for item in args.split():
            name, _, value = item.partition("=")
            found[name] = value
    return found


def test_base_image_is_python_312_slim_bookworm(dockerfile: list[tuple[str, str]]) -> None:
    assert arguments(dockerfile, "FROM") == ["python:3.12-slim-bookworm"]


def test_postgresql_15_and_download_tools_come_from_apt(dockerfile: list[tuple[str, str]]) -> None:
    installs = [r for r in arguments(dockerfile, "RUN") if "apt-get install" in r]
    assert len(installs) == 1
    packages = set(installs[0].split("apt-get install", 1)[1].split("&&")[0].split())
    assert {"postgresql-15", "curl", "unzip", "ca-certificates"} <= packages
    assert "rm -rf /var/lib/apt/lists/*" in installs[0]


def test_terraform_is_pinned_and_checksummed(dockerfile: list[tuple[str, str]]) -> None:
    args = declared(dockerfile, "ARG")
    assert args["TERRAFORM_VERSION"] == "1.11.4"
    assert "TERRAFORM_SHA256" in args  # an override for other versions and architectures
    for arch in ("AMD64", "ARM64"):
        assert re.fullmatch(r"[0-9a-f]{64}", args[f"TERRAFORM_SHA256_{arch}"])
    (download,) = [r for r in arguments(dockerfile, "RUN") if "releases.hashicorp.com" in r]
    assert "${TERRAFORM_VERSION}" in download
    assert "sha256sum -c" in download
    assert download.index("sha256sum -c") < download.index("unzip")  # checked before use
    assert "latest" not in download


def test_the_project_is_pip_installed_and_start_sh_is_the_entry_point(
    dockerfile: list[tuple[str, str]],
) -> None:
    assert any(re.search(r"\bpip install /app\b", r) for r in arguments(dockerfile, "RUN"))
    assert "/app" in arguments(dockerfile, "WORKDIR")
    assert any(c.split()[-1] == "/app" for c in arguments(dockerfile, "COPY"))
    (entrypoint,) = arguments(dockerfile, "ENTRYPOINT")
    assert json.loads(entrypoint) == ["/app/start.sh"]  # exec form: start.sh is PID 1
    assert arguments(dockerfile, "CMD") == []


def test_port_health_check_and_volumes(dockerfile: list[tuple[str, str]]) -> None:
    assert arguments(dockerfile, "EXPOSE") == ["5000"]
    (health,) = arguments(dockerfile, "HEALTHCHECK")
    assert "curl -fsS" in health
    assert "/api/health" in health
    assert "${LABLINK_APP_PORT:-5000}" in health
    (volumes,) = arguments(dockerfile, "VOLUME")
    assert set(json.loads(volumes)) == {"/var/lib/postgresql", "/var/lib/lablink"}
    assert arguments(dockerfile, "STOPSIGNAL") == ["SIGTERM"]


def test_no_secrets_are_baked_in(dockerfile: list[tuple[str, str]]) -> None:
    for keyword in ("ENV", "ARG", "LABEL"):
        for name, value in declared(dockerfile, keyword).items():
            assert not SECRET_NAME.search(name), f"{keyword} {name} looks like a secret"
            assert not SECRET_NAME.search(value), f"{keyword} {name}={value} looks like a secret"
    for run in arguments(dockerfile, "RUN"):
        assert not re.search(r"(PASSWORD|SECRET|TOKEN)\w*=", run), run
    # The app runs unprivileged: start.sh drops to this user (root only sets things up).
    assert any("useradd" in r and " lablink" in r for r in arguments(dockerfile, "RUN"))


def test_dockerignore_keeps_secrets_state_and_clutter_out() -> None:
    patterns = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "tests", "**/__pycache__"} <= patterns
    assert {".env", "**/*.pem", "**/aws_credentials", "**/*.tfstate", "**/.terraform"} <= patterns
    for needed in ("start.sh", "pyproject.toml", "README.md", "lablink_core", "dashboard"):
        assert needed not in patterns


def test_environment_yml_gives_python_postgresql_terraform_and_the_project() -> None:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert env["name"] == "lablink"
    assert "conda-forge" in env["channels"]
    specs = [d for d in env["dependencies"] if isinstance(d, str)]
    names = {re.split(r"[=<> ]", spec, maxsplit=1)[0]: spec for spec in specs}
    assert names["python"] == "python=3.12"
    assert names["postgresql"] == "postgresql=15"
    assert {"pip", "terraform"} <= names.keys()
    (pip,) = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    assert "-e .[test]" in pip


def test_start_sh_is_executable_strict_bash() -> None:
    script = REPO / "start.sh"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text


# shellcheck runs on start.sh, with every other shell script, in tests/unit/test_lint.py.


CLIENT_IMAGE = REPO / "client-image"


@pytest.fixture(scope="module")
def client_dockerfile() -> list[tuple[str, str]]:
    return instructions(CLIENT_IMAGE / "Dockerfile")


def test_client_image_is_a_pinned_cuda_runtime_ubuntu(
    client_dockerfile: list[tuple[str, str]],
) -> None:
    bundle_stage, final = arguments(client_dockerfile, "FROM")
    assert bundle_stage == "python:3.12-slim-bookworm AS bundle"
    assert re.fullmatch(r"nvidia/cuda:12\.\d+\.\d+-runtime-ubuntu22\.04", final)
    assert declared(client_dockerfile, "ENV")["NVIDIA_DRIVER_CAPABILITIES"] == "all"


def test_client_image_installs_crd_of_a_pinned_major_xfce_and_tini(
    client_dockerfile: list[tuple[str, str]],
) -> None:
    assert re.fullmatch(r"\d{3}", declared(client_dockerfile, "ARG")["CRD_MAJOR"])
    (install,) = [r for r in arguments(client_dockerfile, "RUN") if "chrome-remote-desktop=" in r]
    assert '"chrome-remote-desktop=${CRD_MAJOR}.*"' in install
    assert "https://dl.google.com/linux/chrome-remote-desktop/deb stable main" in install
    assert "signed-by=/usr/share/keyrings/google-linux.gpg" in install
    for package in ("xfce4", "dbus-x11", "python3", "git", "tini", "util-linux"):
        assert f" {package} " in f" {install} "
    assert "rm -rf /var/lib/apt/lists/*" in install


def test_client_image_runs_the_bundled_client_for_a_non_root_desktop_user(
    client_dockerfile: list[tuple[str, str]],
) -> None:
    runs = arguments(client_dockerfile, "RUN")
    assert "python -m lablink_core.client_bundle /lablink-client.pyz" in runs
    (user,) = [r for r in runs if "useradd" in r]
    assert '--uid "${DESKTOP_UID}"' in user and "usermod -aG chrome-remote-desktop" in user
    assert declared(client_dockerfile, "ENV")["LABLINK_DESKTOP_USER"] == "${DESKTOP_USER}"
    copies = arguments(client_dockerfile, "COPY")
    assert "--from=bundle /lablink-client.pyz /usr/local/bin/lablink-client" in copies
    assert "lablink_core/ /src/lablink_core/" in copies  # only the package, no server state
    (entrypoint,) = arguments(client_dockerfile, "ENTRYPOINT")
    assert json.loads(entrypoint) == ["/usr/bin/tini", "--", "/usr/local/bin/lablink-entrypoint"]
    assert json.loads(arguments(client_dockerfile, "CMD")[0]) == ["lablink-client"]
    for keyword in ("ENV", "ARG"):
        for name, value in declared(client_dockerfile, keyword).items():
            assert not SECRET_NAME.search(name + value), f"{keyword} {name} looks like a secret"


def test_crd_session_starts_xfce() -> None:
    session = (CLIENT_IMAGE / "chrome-remote-desktop-session").read_text()
    assert session == "exec /etc/X11/Xsession /usr/bin/xfce4-session\n"


def test_client_entrypoint_prepares_crd_and_execs_the_client() -> None:
    script = CLIENT_IMAGE / "entrypoint.sh"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and "\nset -euo pipefail\n" in text
    assert 'install -d -m 0700 -o "$uid" -g "$gid" "/run/user/$uid"' in text
    assert "exec /usr/local/bin/lablink-client" in text
