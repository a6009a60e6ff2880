"""AWS on this machine for the fleet benchmark: moto on 127.0.0.1, the ``hashicorp/aws``
provider mirror Terraform installs from, and terraform commands timed by verb."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lablink_core.fleet.terraform import SubprocessRunner

REGION = "us-east-1"
MIRRORS = (os.environ.get("LABLINK_TF_PLUGIN_DIR", ""), "/opt/tf-plugins")


class Moto:
    """A moto server on 127.0.0.1 for the benchmark's lifetime."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("moto did not start")
            time.sleep(0.1)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1):  # noqa: S310
                return True
        except OSError:
            return False

    def reset(self) -> None:
        """Forget every resource, then have moto rebuild the region's EC2 backend now,
        not inside a timed apply."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310
            pass
        self.running_instances()

    def env(self) -> dict[str, str]:
        """Sends Terraform's AWS provider to moto; anything else fails on a dead proxy."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": REGION,
            "AWS_MAX_ATTEMPTS": "1",
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "HTTP_PROXY": "http://127.0.0.1:9",
            "NO_PROXY": "127.0.0.1,localhost",
        }

    def running_instances(self) -> int:
        import boto3

        keys = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        ec2 = boto3.client("ec2", endpoint_url=self.url, region_name=REGION, **keys)
        state = [{"Name": "instance-state-name", "Values": ["pending", "running"]}]
        pages = ec2.get_paginator("describe_instances").paginate(Filters=state)
        return sum(len(r["Instances"]) for page in pages for r in page["Reservations"])

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


class TimedCommands(SubprocessRunner):
    """Notes how long each terraform process of the provider ran, by verb."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: dict[str, float] = {}

    def stream(self, argv: Sequence[str], **options: Any) -> int:
        began = time.perf_counter()
        try:
            return super().stream(argv, **options)
        finally:
            verb = argv[1]
            self.seconds[verb] = self.seconds.get(verb, 0.0) + time.perf_counter() - began


def missing_parts() -> str | None:
    if shutil.which("terraform") is None:
        return "terraform is not on PATH"
    if mirror() is None:
        return "no hashicorp/aws provider mirror (set LABLINK_TF_PLUGIN_DIR)"
    try:
        import boto3  # noqa: F401
        import moto  # noqa: F401
    except ImportError:
        return "moto[server] and boto3 are not installed (pip install -e '.[test]')"
    return None


def mirror() -> Path | None:
    for candidate in MIRRORS:
        if candidate and (Path(candidate) / "registry.terraform.io/hashicorp/aws").is_dir():
            return Path(candidate)
    return None
