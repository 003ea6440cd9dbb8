"""One live `kiln dev` process for the client tests (each test works in its own folder, with the
admin token `kiln dev` made at start-up), and a local HTTP server of qcow2 images made by
qemu-img; `/slow/…` answers after a pause."""

import functools
import http.server
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kiln.client import KilnClient

KILN = Path(sys.executable).parent / "kiln"
SLOW_SECONDS = 2.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert process.poll() is None, "kiln dev exited during start-up"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)  # polling an external process's port
    raise AssertionError("kiln dev did not start listening within 15 s")


class _Images(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/slow/"):
            time.sleep(SLOW_SECONDS)  # a source slow enough to cancel or time out a create
            self.path = self.path.removeprefix("/slow")
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def image_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of the image server: `/disk.qcow2` is a 16 MiB qcow2 image."""
    root = tmp_path_factory.mktemp("images")
    subprocess.run(
        ["qemu-img", "create", "-f", "qcow2", str(root / "disk.qcow2"), "16M"],
        check=True,
        capture_output=True,
    )
    handler = functools.partial(_Images, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="session")
def image_url(image_server: str) -> str:
    return f"{image_server}/disk.qcow2"


@pytest.fixture(scope="session")
def kiln_dev_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kiln")


@pytest.fixture(scope="session")
def kiln_dev(kiln_dev_dir: Path) -> Iterator[str]:
    data = kiln_dev_dir
    port = free_port()
    with (data / "kiln.log").open("wb") as log:
        process = subprocess.Popen(
            [
                str(KILN),
                "dev",
                "--data-dir",
                str(data / "data"),
                "--http-port",
                str(port),
                "--import-allowed-hosts",
                "127.0.0.1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_listening(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(30)
    assert returncode == 0, (data / "kiln.log").read_text()[-3000:]


@pytest.fixture(scope="session")
def admin_token(kiln_dev: str, kiln_dev_dir: Path) -> str:
    """The token `kiln dev` wrote for subject `admin` (it was started without a secret)."""
    return (kiln_dev_dir / "data" / "admin.token").read_text().strip()


@pytest.fixture
def folder() -> str:
    """A folder of this test's own, so tests never see each other's images."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def client(kiln_dev: str, admin_token: str) -> AsyncIterator[KilnClient]:
    async with KilnClient(kiln_dev, admin_token, retries=2, backoff=0.01) as kiln:
        yield kiln
