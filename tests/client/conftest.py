"""One live `kiln dev` process for the client tests (each test works in its own folder, with the
admin token `kiln dev` made at start-up), and a local HTTP server of qcow2 images made by
qemu-img; `/slow/…` answers after a pause, `/stall/<key>` sends half an image and waits for its
client to close the connection."""

import functools
import http.server
import os
import select
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


class Stall:
    """One stalled request of `/stall/<key>`: when it has sent half of the image, and when its
    client closed the connection (`time.monotonic()`)."""

    STALL_SECONDS = 60.0

    def __init__(self) -> None:
        self.streaming = threading.Event()
        self.closed = threading.Event()
        self.closed_at = 0.0

    def wait_closed(self, connection: socket.socket) -> None:
        deadline = time.monotonic() + self.STALL_SECONDS
        while time.monotonic() < deadline:
            readable, _, _ = select.select([connection], [], [], 0.01)
            try:
                if readable and not connection.recv(1, socket.MSG_PEEK):
                    break
            except OSError:
                break
        else:
            return
        self.closed_at = time.monotonic()
        self.closed.set()


STALLS: dict[str, Stall] = {}


class _Images(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/stall/"):
            self._stall(STALLS[self.path.removeprefix("/stall/")])
            return
        if self.path.startswith("/slow/"):
            time.sleep(SLOW_SECONDS)  # a source slow enough to cancel or time out a create
            self.path = self.path.removeprefix("/slow")
        super().do_GET()

    def _stall(self, stall: Stall) -> None:
        data = (Path(self.directory) / "disk.qcow2").read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        stall.streaming.set()
        stall.wait_closed(self.connection)
        self.close_connection = True

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


@pytest.fixture
def stall(image_server: str) -> Iterator[tuple[str, Stall]]:
    """The URL of a source that stalls halfway, and how its request went."""
    key = uuid.uuid4().hex
    STALLS[key] = Stall()
    yield f"{image_server}/stall/{key}", STALLS[key]
    del STALLS[key]


@pytest.fixture(scope="session")
def kiln_dev_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kiln")


def _start(
    args: list[str], log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen([str(KILN), *args], stdout=log, stderr=subprocess.STDOUT, env=env)


def _stop(process: subprocess.Popen[bytes], log_path: Path) -> None:
    process.send_signal(signal.SIGTERM)
    returncode = process.wait(45)
    assert returncode == 0, log_path.read_text()[-3000:]


def _dev(data: Path) -> Iterator[tuple[str, str]]:
    """`kiln dev` with no secret configured: it makes one and an admin token."""
    port = free_port()
    args = ["dev", "--data-dir", str(data / "data"), "--http-port", str(port)]
    process = _start([*args, "--import-allowed-hosts", "127.0.0.1"], data / "kiln.log")
    try:
        wait_until_listening(port, process)
        yield f"http://127.0.0.1:{port}", (data / "data" / "admin.token").read_text().strip()
    finally:
        _stop(process, data / "kiln.log")


def _shared(data: Path) -> Iterator[tuple[str, str]]:
    """`kiln gateway` and `kiln worker` on PostgreSQL and RabbitMQ, each in a fresh database
    and vhost of their own, with a configured secret and `admin` as the admin."""
    name = f"kiln_test_{uuid.uuid4().hex}"
    _run("psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-c", f'CREATE DATABASE "{name}"')
    _run("rabbitmqctl", "-q", "add_vhost", name)
    _run("rabbitmqctl", "-q", "set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    port, secret = free_port(), uuid.uuid4().hex * 2
    env = {
        **os.environ,
        "KILN_DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{name}",
        "KILN_BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{name}",
        "KILN_STORAGE_URL": f"file://{data / 'blobs'}",
        "KILN_TOKEN_SECRET": secret,
        "KILN_ADMINS": "admin",
        "KILN_IMPORT_ALLOWED_HOSTS": "127.0.0.1",
        "KILN_HTTP_PORT": str(port),
        "KILN_WORKER_HTTP_PORT": "0",
    }
    worker = _start(["worker"], data / "worker.log", env)
    gateway = _start(["gateway"], data / "gateway.log", env)
    try:
        wait_until_listening(port, gateway)
        token = _run(str(KILN), "token", "issue", "--subject", "admin", env=env).strip()
        yield f"http://127.0.0.1:{port}", token
    finally:
        _stop(gateway, data / "gateway.log")
        _stop(worker, data / "worker.log")
        drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
        _run("psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-c", drop)
        _run("rabbitmqctl", "-q", "delete_vhost", name)


def _run(*args: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, env=env).stdout


# The admin token of each running deployment, by its URL.
_TOKENS: dict[str, str] = {}


@pytest.fixture(scope="session", params=["dev", "shared"])
def kiln_dev(request: pytest.FixtureRequest, kiln_dev_dir: Path) -> Iterator[str]:
    """A live Kiln: `kiln dev`, then gateway + worker on PostgreSQL and RabbitMQ."""
    data = kiln_dev_dir / request.param
    data.mkdir()
    start = _dev if request.param == "dev" else _shared
    for url, token in start(data):
        _TOKENS[url] = token
        yield url


@pytest.fixture(scope="session")
def admin_token(kiln_dev: str) -> str:
    """A token of subject `admin`, admin of every folder of the running deployment."""
    return _TOKENS[kiln_dev]


@pytest.fixture
def folder() -> str:
    """A folder of this test's own, so tests never see each other's images."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def client(kiln_dev: str, admin_token: str) -> AsyncIterator[KilnClient]:
    async with KilnClient(kiln_dev, admin_token, retries=2, backoff=0.01) as kiln:
        yield kiln
