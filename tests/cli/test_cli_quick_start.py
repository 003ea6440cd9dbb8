"""A newcomer's path: the README's "Your first image" blocks, run as written (the server block
in the background, the client block through bash) in a fresh directory beside the project's
venv, end with a READY image."""

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"<!-- quick-start: (\w+)[^>]*-->\n```sh\n(.*?)```", re.S)


def quick_start_blocks() -> dict[str, str]:
    return dict(BLOCK.findall((ROOT / "README.md").read_text()))


def wait_ready(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)  # kiln dev is still starting
    raise AssertionError(f"{url} not ready within {timeout} s")


@pytest.mark.timeout(90)
def test_the_readme_quick_start_ends_with_a_ready_image(tmp_path: Path) -> None:
    blocks = quick_start_blocks()
    assert set(blocks) == {"server", "client"}, blocks
    for port in (8080, 8000):  # the README's own: something else there would answer instead
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} is taken"
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    server = subprocess.Popen(
        ["bash", "-c", f"exec {blocks['server'].strip()}"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready("http://127.0.0.1:8080/readyz", 30)
        client = subprocess.Popen(
            ["bash", "-e", "-c", blocks["client"]],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its group: what it leaves running (a failed run) goes too
        )
        try:
            output, _ = client.communicate(timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(client.pid, signal.SIGTERM)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    assert client.returncode == 0, output
    assert re.search(r"image status\s+READY", output), output
    assert re.search(r"tiny\s+READY", output), output
