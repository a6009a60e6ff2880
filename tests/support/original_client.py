"""A stand-in for the original LabLink client (talmolab/lablink, packages/client, CRD era):
it sends exactly that client's requests and reads the answers exactly as it does.

- ``POST {ALLOCATOR_URL}/vm_startup`` with ``{"hostname": VM_NAME}`` and
  ``Authorization: Bearer <API_TOKEN>``, connect timeout 30 s, read timeout 7 days; on a 200
  it requires ``"status": "success"`` (anything else: it exits for good) and reads
  ``command`` and ``pin``; any other status: it retries after 10-15 s.
- It parses ``command`` with argparse, keeping only ``--code`` (one pair of surrounding quotes
  stripped), rebuilds ``start-host --code=… --redirect-url=<Google's> --name=$VM_NAME`` and
  writes the PIN twice on stdin.
- Its reports: /api/heartbeat, /api/update_inuse_status, /api/gpu_health, /api/vm-status.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from dataclasses import dataclass, field

import httpx

START_HOST = "/opt/google/chrome-remote-desktop/start-host"
REDIRECT_URL = "https://remotedesktop.google.com/_/oauthredirect"


class RejectedForGood(Exception):
    """A 200 without "status": "success": the original client logs "Allocator rejected
    request" and exits without starting CRD."""


def _strip_one_pair_of_quotes(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


@dataclass
class OriginalClient:
    """One VM running the original client."""

    allocator_url: str
    vm_name: str
    api_token: str
    retries: list[int] = field(default_factory=list)  # statuses that made it retry

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_token}"}

    def subscribe(self, *, give_up_after: float = 60.0) -> tuple[str, str, float]:
        """Wait for the CRD command as the original does; returns (command, pin, when)."""
        deadline = time.monotonic() + give_up_after
        timeout = httpx.Timeout(connect=30.0, read=604800.0, write=30.0, pool=30.0)
        while time.monotonic() < deadline:
            reply = httpx.post(
                f"{self.allocator_url}/vm_startup",
                json={"hostname": self.vm_name},
                headers=self._headers(),
                timeout=timeout,
            )
            if reply.status_code == 200:
                data = reply.json()
                if data.get("status") != "success":
                    raise RejectedForGood(data.get("message"))
                return data["command"], data["pin"], time.monotonic()
            self.retries.append(reply.status_code)
            time.sleep(0.2)  # the original waits 10 s + U(0, 5) s here
        raise TimeoutError(f"{self.vm_name} got no command in {give_up_after} s")

    def start_host(self, command: str, pin: str) -> tuple[list[str], str]:
        """The argv and stdin the original runs start-host with."""
        parser = argparse.ArgumentParser(add_help=False)
        parser.add_argument("--code")
        known, _ = parser.parse_known_args(command.split())
        code = _strip_one_pair_of_quotes(known.code)
        argv = [
            START_HOST,
            f"--code={code}",
            f"--redirect-url={REDIRECT_URL}",
            f"--name={self.vm_name}",
        ]
        return argv, f"{pin}\n{pin}\n"

    def heartbeat(self, *, crd_active: bool, disk_free_pct: int) -> httpx.Response:
        body = {
            "vm_id": self.vm_name,
            "boot_id": "6f0b7c2e-3a51-4f7e-9d1a-2c4b8e9f0a11",
            "timestamp": dt.datetime.now(dt.UTC).isoformat(),
            "crd_active": crd_active,
            "disk_free_pct": disk_free_pct,
        }
        return self._post("/api/heartbeat", body)

    def in_use(self, status: bool) -> httpx.Response:
        return self._post("/api/update_inuse_status", {"hostname": self.vm_name, "status": status})

    def gpu_health(self, gpu_status: str) -> httpx.Response:
        return self._post("/api/gpu_health", {"hostname": self.vm_name, "gpu_status": gpu_status})

    def vm_status(self, status: str) -> httpx.Response:
        return self._post("/api/vm-status", {"hostname": self.vm_name, "status": status})

    def _post(self, path: str, body: dict[str, object]) -> httpx.Response:
        return httpx.post(
            f"{self.allocator_url}{path}", json=body, headers=self._headers(), timeout=10
        )
