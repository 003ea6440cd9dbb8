"""`kiln dev` as a user runs it: a real process, a real image imported from a local server."""

import asyncio
import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

KILN = Path(sys.executable).parent / "kiln"
VIRTUAL_SIZE = 16 * 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def image_server(tmp_path: Path) -> AsyncIterator[str]:
    image = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", str(image), "16M"], check=True)
    app = web.Application()
    app.router.add_static("/", tmp_path)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("/disk.qcow2"))


@pytest.fixture
async def kiln_dev(tmp_path: Path) -> AsyncIterator[str]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        str(KILN),
        "dev",
        "--data-dir",
        str(tmp_path / "data"),
        "--http-port",
        str(port),
        "--import-allowed-hosts",
        "127.0.0.1",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_until_listening(port)
        yield base
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 15)
    assert process.returncode == 0, stderr.decode()[-2000:]


async def wait_until_listening(port: int) -> None:
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)  # polling an external process's port
            continue
        writer.close()
        return
    raise AssertionError("kiln dev did not start listening within 10 s")


async def wait_done(session: aiohttp.ClientSession, url: str) -> dict[str, object]:
    for _ in range(300):
        async with session.get(url) as response:
            operation: dict[str, object] = await response.json()
        if operation["done"]:
            return operation
        await asyncio.sleep(0.05)  # polling the API, as a client does
    raise AssertionError("operation not done within 15 s")


async def test_kiln_dev_imports_an_image(kiln_dev: str, image_server: str, tmp_path: Path) -> None:
    token = (tmp_path / "data" / "admin.token").read_text().strip()  # made by kiln dev
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
        create = {"folderId": "f1", "name": "disk", "uri": image_server}
        async with session.post(f"{kiln_dev}/compute/v1/images", json=create) as response:
            assert response.status == 200
            operation = await response.json()
        done = await wait_done(session, f"{kiln_dev}/operations/{operation['id']}")
        assert "error" not in done, done
        image_id = operation["metadata"]["imageId"]
        async with session.get(f"{kiln_dev}/compute/v1/images/{image_id}") as response:
            image = await response.json()
    assert image["status"] == "READY"
    assert image["size"] == str(VIRTUAL_SIZE)
    assert image["minDiskSize"] == str(VIRTUAL_SIZE)
    assert int(image["storageSize"]) > 0


@pytest.mark.usefixtures("permissive_umask")  # before kiln_dev: the process inherits it
async def test_kiln_dev_keeps_its_data_directory_to_its_owner(
    kiln_dev: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    kept = [data, *(data / name for name in ("kiln.db", "kiln.db-wal", "kiln.db-shm"))]

    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in kept}

    assert modes == {"data": 0o700, "kiln.db": 0o600, "kiln.db-wal": 0o600, "kiln.db-shm": 0o600}


@pytest.mark.parametrize("given", ["flag", "variable"])
def test_a_port_in_use_stops_kiln_dev_at_once_in_one_line(tmp_path: Path, given: str) -> None:
    data = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        flag = ["--http-port", str(port)] if given == "flag" else []
        env = {"KILN_HTTP_PORT": str(port)} if given == "variable" else {}
        ended = subprocess.run(
            [str(KILN), "dev", "--data-dir", str(data), *flag],
            capture_output=True,
            text=True,
            timeout=30,
            env={**{k: v for k, v in os.environ.items() if not k.startswith("KILN_")}, **env},
        )

    name = "--http-port" if given == "flag" else "KILN_HTTP_PORT"
    assert ended.returncode == 2
    assert ended.stderr.splitlines() == [
        f"Error: bad setting {name}: 127.0.0.1:{port} is already in use"
    ]
    assert ended.stdout == ""  # no log line: nothing started
    assert not data.exists()
