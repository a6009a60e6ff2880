"""The README's curl example works as pasted: its made-up code has the form the allocator
accepts, and the request gets a VM (run by bash and curl, against a test server)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.server import RunningServer
from tests.integration.test_api import register

README = Path(__file__).resolve().parents[2] / "README.md"


def curl_example() -> str:
    """The README's first ```bash block that posts to /request_vm."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    return next(block for block in blocks if "curl -X POST" in block and "request_vm" in block)


def test_the_readme_curl_example_gets_a_vm(api: RunningServer) -> None:
    if shutil.which("curl") is None:
        pytest.fail("curl is needed to run the README's example (apt-get install -y curl)")
    register(api, "vm-readme")
    command = curl_example().replace("http://localhost:5000", api.url)
    command = command.replace("curl -X POST", "curl -sS -H 'Accept: application/json' -X POST")
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["hostname"] == "vm-readme" and re.fullmatch(r"\d{6}", answer["pin"]), answer
