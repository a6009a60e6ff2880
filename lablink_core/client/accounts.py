"""The desktop account: whose desktop CRD shows, and who owns the cloned repository.

In the client image the agent runs as root and the researcher's desktop as an unprivileged
account (LABLINK_DESKTOP_USER). The split matters: the agent's environment and credential
file are then out of the researcher's reach (another user's /proc/<pid>/environ and 0600
files are unreadable), so a researcher cannot take the VM's credential and poll for the
next researcher's CRD code and PIN. On a bring-your-own machine the agent usually runs as
the desktop user itself, and nothing switches.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path
from typing import Final

SETPRIV: Final = "setpriv"


class AccountError(OSError):
    """The desktop account cannot be used (unknown, or not reachable from this user)."""


def desktop_account(name: str | None) -> pwd.struct_passwd:
    """The named account, or the agent's own when none is named."""
    if not name:
        return pwd.getpwuid(os.getuid())
    try:
        return pwd.getpwnam(name)
    except KeyError as error:
        raise AccountError(f"the desktop user {name!r} does not exist") from error


def run_as(account: pwd.struct_passwd, setpriv: str = SETPRIV) -> list[str]:
    """The prefix that runs a command as ``account`` (empty when we already are it).

    setpriv (util-linux) rather than Popen(user=...): that needs Python 3.9, and
    ``--init-groups`` brings the account's groups (CRD's chrome-remote-desktop group).
    """
    me = os.getuid()
    if me == account.pw_uid:
        return []
    if me != 0:
        raise AccountError(
            f"the agent runs as uid {me}, so it cannot act as {account.pw_name}: "
            "run it as root or as that user"
        )
    ids = [f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}"]
    return [setpriv, *ids, "--init-groups", "--"]


def make_owned_dirs(path: Path, account: pwd.struct_passwd, mode: int = 0o700) -> None:
    """``mkdir -p`` whose new folders belong to ``account`` (the agent may be root)."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        folder.mkdir(mode=mode)
        if os.getuid() == 0 and account.pw_uid != 0:
            os.chown(folder, account.pw_uid, account.pw_gid)
