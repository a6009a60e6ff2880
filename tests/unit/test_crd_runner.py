"""SubprocessCrdRunner against fake start-host and chrome-remote-desktop scripts.

The fakes record what they were given (argv, stdin, environment, the runtime folder) and
behave like the real ones in a container without systemd: start-host writes a
host#<hash>.json and aborts (exit 133, no registration) when XDG_RUNTIME_DIR is missing.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from lablink_core.client.crd_host import (
    CODE_MARKER,
    CrdHostError,
    CrdHostPaths,
    SubprocessCrdRunner,
)
from lablink_core.client.runners import CrdLaunch
from lablink_core.crd import GOOGLE_REDIRECT_URL, CrdCommand

PIN = "902114"
CODE = "4/0AfJohXn-runner-code"

FAKE_START_HOST = """#!{python}
import json, os, sys
runtime = os.environ.get("XDG_RUNTIME_DIR", "")
seen = {{"argv": sys.argv, "stdin": sys.stdin.read(), "env": dict(os.environ), "runtime": None}}
if runtime and os.path.isdir(runtime):
    info = os.stat(runtime)
    seen["runtime"] = [info.st_mode & 0o777, info.st_uid, info.st_gid]
with open({log!r}, "a") as handle:
    handle.write(json.dumps(seen) + "\\n")
print("Enter a PIN of at least six digits:")
if seen["runtime"] is None:
    sys.exit(133)  # what the real one does: SIGTRAP, nothing registered
if {registers!r}:
    with open(os.path.join({config!r}, "host#5f2b.json"), "w") as handle:
        handle.write("{{}}")
print("Couldn't start host: systemd is not running")
sys.exit({exit_code})
"""

FAKE_SETPRIV = """#!{python}
import json, os, sys
with open({log!r}, "a") as handle:
    handle.write(json.dumps({{"argv": sys.argv[1:], "env": {{}}}}) + "\\n")
rest = sys.argv[sys.argv.index("--") + 1 :]
os.execv(rest[0], rest)
"""

FAKE_DAEMON = """#!{python}
import json, os, sys
with open({log!r}, "a") as handle:
    handle.write(json.dumps({{"argv": sys.argv[1:], "env": dict(os.environ)}}) + "\\n")
sys.exit({exit_code})
"""


@dataclass
class FakeCrd:
    """Fake CRD programs in a folder, the account they run for, and what they recorded."""

    root: Path
    account: pwd.struct_passwd

    @property
    def config_dir(self) -> Path:
        return self.root / "home" / ".config" / "chrome-remote-desktop"

    def install(self, *, registers: bool = True, exit_code: int = 1, daemon_exit: int = 0) -> None:
        values = {"python": sys.executable, "config": str(self.config_dir)}
        for name, template, extra in (
            ("start-host", FAKE_START_HOST, {"registers": registers, "exit_code": exit_code}),
            ("chrome-remote-desktop", FAKE_DAEMON, {"exit_code": daemon_exit}),
            ("setpriv", FAKE_SETPRIV, {}),
        ):
            script = self.root / name
            log = str(self.root / f"{name}.jsonl")
            script.write_text(template.format(log=log, **values, **extra))
            script.chmod(0o755)

    def paths(self, *, systemd: bool = False) -> CrdHostPaths:
        marker = self.root / "systemd"
        if systemd:
            marker.mkdir(exist_ok=True)
        return CrdHostPaths(
            start_host=str(self.root / "start-host"),
            daemon=str(self.root / "chrome-remote-desktop"),
            config_dir=self.config_dir,
            runtime_root=self.root / "run-user",
            systemd_marker=marker,
            setpriv=str(self.root / "setpriv"),
        )

    def runner(self, environ: dict[str, str] | None = None, **options: bool) -> SubprocessCrdRunner:
        output: list[str] = []
        runner = SubprocessCrdRunner(
            self.paths(**options), output=output.extend, environ=environ or {}, account=self.account
        )
        runner.output_seen = output  # type: ignore[attr-defined]
        return runner

    def calls(self, name: str) -> list[dict[str, object]]:
        path = self.root / f"{name}.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def daemon_options(self) -> list[object]:
        return [call["argv"] for call in self.calls("chrome-remote-desktop")]


@pytest.fixture
def crd(tmp_path: Path) -> FakeCrd:
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "run-user").mkdir()
    account = pwd.struct_passwd(("lablink", "x", 1000, 1000, "LabLink", str(home), "/bin/bash"))
    fake = FakeCrd(tmp_path, account)
    fake.install()
    return fake


def launch(code: str = CODE) -> CrdLaunch:
    return CrdLaunch(CrdCommand(code=code, redirect_url=GOOGLE_REDIRECT_URL), "vm-7", PIN)


SECRET_ENV = {
    "LABLINK_VM_CREDENTIAL": "lvm2.secret-credential",
    "API_TOKEN": "lvm1.secret-token",
    "LABLINK_ENROLMENT_TOKEN": "lve1.secret-enrolment",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "DISPLAY": ":0",
    "HOME": "/root",
    "USER": "root",
    "LANG": "C.UTF-8",
    "CHROME_REMOTE_DESKTOP_DEFAULT_DESKTOP_SIZES": "1920x1080",
}


def test_first_start_registers_with_the_pin_on_stdin_then_starts_the_daemon(crd: FakeCrd) -> None:
    runner = crd.runner(dict(SECRET_ENV))
    runner.start(launch())
    (start_host,) = crd.calls("start-host")
    assert start_host["argv"] == [
        str(crd.root / "start-host"),
        f"--code={CODE}",
        f"--redirect-url={GOOGLE_REDIRECT_URL}",
        "--name=vm-7",
    ]
    assert start_host["stdin"] == f"{PIN}\n{PIN}\n"
    assert crd.daemon_options() == [["--stop"], ["--start", "--new-session"]]
    for call in [start_host, *crd.calls("chrome-remote-desktop")]:
        assert not any(PIN in arg for arg in call["argv"])  # type: ignore[union-attr]
    assert runner.running
    assert [p.name for p in runner.registrations()] == ["host#5f2b.json"]
    assert any("start-host: Enter a PIN" in line for line in runner.output_seen)  # type: ignore[attr-defined]


def test_crd_gets_a_clean_environment_of_the_real_account(crd: FakeCrd) -> None:
    crd.runner(dict(SECRET_ENV)).start(launch())
    for call in [*crd.calls("start-host"), *crd.calls("chrome-remote-desktop")]:
        env = call["env"]
        assert isinstance(env, dict)
        assert (env["USER"], env["LOGNAME"], env["HOME"]) == (
            "lablink",
            "lablink",
            crd.account.pw_dir,
        )
        assert env["DISPLAY"] == ""
        assert env["XDG_RUNTIME_DIR"] == str(crd.root / "run-user" / "1000")
        assert env["LANG"] == "C.UTF-8"
        assert env["CHROME_REMOTE_DESKTOP_DEFAULT_DESKTOP_SIZES"] == "1920x1080"
        leaked = [name for name in env if name.startswith("LABLINK_") or "SECRET" in name]
        assert leaked == [] and "API_TOKEN" not in env
        assert not any("secret" in value for value in env.values())


def test_xdg_runtime_dir_is_created_0700_and_owned_by_the_account(crd: FakeCrd) -> None:
    crd.runner().start(launch())
    (start_host,) = crd.calls("start-host")
    assert start_host["runtime"] == [0o700, 1000, 1000]
    runtime = crd.root / "run-user" / "1000"
    assert stat.S_IMODE(runtime.stat().st_mode) == 0o700 and runtime.stat().st_uid == 1000


def test_a_loose_existing_runtime_dir_is_tightened(crd: FakeCrd) -> None:
    runtime = crd.root / "run-user" / "1000"
    runtime.mkdir(mode=0o755)
    runtime.chmod(0o755)
    crd.runner().start(launch())
    assert stat.S_IMODE(runtime.stat().st_mode) == 0o700


def test_without_a_runtime_root_start_fails_clearly_and_runs_nothing(crd: FakeCrd) -> None:
    (crd.root / "run-user").rmdir()
    with pytest.raises(CrdHostError, match="XDG_RUNTIME_DIR"):
        crd.runner().start(launch())
    assert crd.calls("start-host") == [] and crd.calls("chrome-remote-desktop") == []


def test_warm_restart_restarts_the_daemon_without_start_host(crd: FakeCrd) -> None:
    crd.runner().start(launch())
    # The agent (or its container) restarts and is handed the same task again.
    again = crd.runner()
    again.start(launch())
    assert len(crd.calls("start-host")) == 1  # the used code is not sent to Google twice
    assert crd.daemon_options()[2:] == [["--stop"], ["--start", "--new-session"]]
    assert again.running


def test_a_new_code_registers_again(crd: FakeCrd) -> None:
    runner = crd.runner()
    runner.start(launch())
    runner.start(launch("4/0AfJohXn-renewed-code"))
    assert [call["argv"][1] for call in crd.calls("start-host")] == [  # type: ignore[index]
        f"--code={CODE}",
        "--code=4/0AfJohXn-renewed-code",
    ]


def test_release_forgets_the_registration(crd: FakeCrd) -> None:
    runner = crd.runner()
    runner.start(launch())
    runner.stop(forget=True)
    assert not runner.running
    assert runner.registrations() == [] and not (crd.config_dir / CODE_MARKER).exists()
    assert crd.daemon_options()[-1] == ["--stop"]
    runner.start(launch())  # the same code again is not a warm restart any more
    assert len(crd.calls("start-host")) == 2


def test_shutdown_keeps_the_registration_for_a_warm_restart(crd: FakeCrd) -> None:
    runner = crd.runner()
    runner.start(launch())
    runner.stop()
    assert crd.daemon_options()[-1] == ["--stop"]
    assert runner.registrations() and (crd.config_dir / CODE_MARKER).exists()
    # The marker holds a digest of the code, never the code itself.
    assert CODE not in (crd.config_dir / CODE_MARKER).read_text()


def test_start_host_that_registers_nothing_is_an_error(crd: FakeCrd) -> None:
    crd.install(registers=False, exit_code=1)
    runner = crd.runner()
    with pytest.raises(CrdHostError, match=r"registered no host \(exit 1\)"):
        runner.start(launch())
    assert crd.daemon_options() == [["--stop"]] and not runner.running


def test_a_failing_daemon_start_is_an_error(crd: FakeCrd) -> None:
    crd.install(daemon_exit=1)
    with pytest.raises(CrdHostError, match="--start --new-session exited 1"):
        crd.runner().start(launch())


def test_under_systemd_start_host_starts_the_service_itself(crd: FakeCrd) -> None:
    runner = crd.runner(systemd=True)
    runner.start(launch())
    assert crd.daemon_options() == [["--stop"]] and runner.running
    crd.runner(systemd=True).start(launch())  # warm: systemd restarts its own service
    assert crd.daemon_options() == [["--stop"]] and len(crd.calls("start-host")) == 1


def test_root_is_refused_before_anything_runs(crd: FakeCrd) -> None:
    root = pwd.struct_passwd(("root", "x", 0, 0, "root", "/root", "/bin/bash"))
    runner = SubprocessCrdRunner(crd.paths(), environ={}, account=root)
    with pytest.raises(CrdHostError, match="root"):
        runner.start(launch())
    assert crd.calls("start-host") == []


def test_missing_crd_is_an_error_not_a_crash(crd: FakeCrd) -> None:
    (crd.root / "chrome-remote-desktop").unlink()
    runner = crd.runner()
    with pytest.raises(CrdHostError, match=r"cannot run|chrome-remote-desktop --start"):
        runner.start(launch())
    runner.stop(forget=True)  # never raises, even with CRD missing


def test_launch_repr_shows_neither_code_nor_pin() -> None:
    shown = repr(launch())
    assert CODE not in shown and PIN not in shown


def test_a_root_agent_runs_every_crd_command_as_the_desktop_account(crd: FakeCrd) -> None:
    crd.runner().start(launch())
    switches = [call["argv"] for call in crd.calls("setpriv")]
    if os.getuid() != 0:
        assert switches == []  # already the desktop account: nothing to switch
        return
    assert len(switches) == 3  # --stop, start-host, --start
    for argv in switches:
        assert argv[:4] == ["--reuid=1000", "--regid=1000", "--init-groups", "--"]  # type: ignore[index]


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    """A folder another account can use (pytest's tmp_path is private to its owner)."""
    path = Path(tempfile.mkdtemp(prefix="lablink-crd-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_the_switch_to_the_desktop_account_is_real(world_readable_dir: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    if os.getuid() != 0:
        runner = SubprocessCrdRunner(CrdHostPaths(), environ={}, account=nobody)
        with pytest.raises(CrdHostError, match="run it as root or as that user"):
            runner.start(launch())
        return
    home = world_readable_dir / "home"
    home.mkdir()
    os.chown(home, nobody.pw_uid, nobody.pw_gid)
    (world_readable_dir / "run-user").mkdir()
    logs = world_readable_dir / "logs"
    logs.mkdir(mode=0o777)
    logs.chmod(0o777)
    account = pwd.struct_passwd(("nobody", "x", nobody.pw_uid, nobody.pw_gid, "", str(home), ""))
    fake = FakeCrd(world_readable_dir, account)
    fake.install()
    for name in ("start-host", "chrome-remote-desktop"):
        # Logs where nobody may write them, and the system Python (nobody may not reach ours).
        script = world_readable_dir / name
        text = script.read_text().replace(str(world_readable_dir / name), str(logs / name))
        script.write_text(text.replace(sys.executable, "/usr/bin/python3", 1))
    paths = replace(fake.paths(), setpriv="/usr/bin/setpriv")
    runner = SubprocessCrdRunner(paths, environ={}, account=account)
    runner.start(launch())
    assert runner.running
    (registration,) = runner.registrations()
    assert registration.stat().st_uid == nobody.pw_uid  # written by start-host as nobody
    assert fake.config_dir.stat().st_uid == nobody.pw_uid  # made by the root agent for nobody
