"""Everything a scenario starts: a PostgreSQL database and a RabbitMQ vhost of its own, real
`kiln gateway` / `kiln worker` / `kiln dev` processes, floor servers, `moto_server`. Each is a
context manager that removes what it made; children are stopped by their own pid only."""

import asyncio
import contextlib
import inspect
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg

from bench.auth import mint_token

BIN = Path(sys.executable).parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
AMQP_ROOT = "amqp://guest:guest@127.0.0.1:5672"
START_TIMEOUT = 30.0
BENCH_SUBJECT = "bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `check` (plain or async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached within {timeout:.0f} s")
        await asyncio.sleep(0.05)


async def port_open(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class Child:
    """One child process; stdout and stderr go to `log_path`."""

    def __init__(self, name: str, process: asyncio.subprocess.Process, log_path: Path) -> None:
        self.name = name
        self.process = process
        self.log_path = log_path
        self.port: int | None = None

    @classmethod
    async def spawn(
        cls, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None
    ) -> "Child":
        with log_path.open("w") as log:  # the child keeps its own descriptor
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                cwd=log_path.parent,
            )
        return cls(name, process, log_path)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tail(self, chars: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def _alive(self) -> None:
        if not self.running:
            raise RuntimeError(
                f"{self.name} exited early ({self.process.returncode}):\n{self.tail()}"
            )

    async def wait_port(self, port: int, timeout: float = START_TIMEOUT) -> None:
        self.port = port

        async def listening() -> bool:
            self._alive()
            return await port_open(port)

        await wait_until(listening, timeout, f"{self.name} listening on {port}")

    async def wait_text(self, text: str, timeout: float = START_TIMEOUT) -> None:
        def written() -> bool:
            self._alive()
            return text in self.log_path.read_text(errors="replace")

        await wait_until(written, timeout, f"{self.name} logging {text!r}")

    def peak_rss(self) -> int:
        """VmHWM of the process in bytes: its peak resident set since start or `reset_peak`."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmHWM in /proc status")

    def rss(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc status")

    def cpu_seconds(self) -> float:
        """User + system CPU time the process (all its threads) has used so far."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat.rpartition(")")[2].split()  # fields[0] is field 3 (state)
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def reset_peak(self) -> bool:
        """Reset VmHWM to the current RSS (Linux: `5` into clear_refs); False if refused."""
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    async def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then SIGKILL if it outlives `timeout`; the exit code."""
        if self.running:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except TimeoutError:
                self.process.send_signal(signal.SIGKILL)
                await self.process.wait()
        return int(self.process.returncode or 0)


@contextlib.asynccontextmanager
async def children() -> AsyncIterator[list[Child]]:
    """A list to put started children in; all stopped on the way out, in reverse order."""
    started: list[Child] = []
    try:
        yield started
    finally:
        for child in reversed(started):
            with contextlib.suppress(Exception):
                await child.stop()


@contextlib.asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """A fresh database `kiln_bench_<hex>` on the local server; dropped afterwards."""
    name = f"kiln_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        admin = await asyncpg.connect(PG_ADMIN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def rabbitmqctl(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "-q", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {err.decode() or out.decode()}")
    return out.decode()


@contextlib.asynccontextmanager
async def rabbit_vhost() -> AsyncIterator[str]:
    """A fresh vhost `kiln-bench-<hex>` (guest may use it); deleted afterwards. Yields its URL."""
    name = f"kiln-bench-{secrets.token_hex(4)}"
    await rabbitmqctl("add_vhost", name)
    try:
        await rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield f"{AMQP_ROOT}/{name}"
    finally:
        await rabbitmqctl("delete_vhost", name)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any KILN_* variable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KILN_")}
    env.update(extra)
    return env


class Kiln:
    """Kiln processes of one scenario sharing a store, a broker and a blob directory. Started
    with authentication settings (a random KILN_TOKEN_SECRET, KILN_ADMINS=bench); every
    request the harness makes carries `headers` (a JWT for subject `bench`)."""

    def __init__(
        self,
        workdir: Path,
        started: list[Child],
        *,
        database_url: str = "",
        broker_url: str = "",
        **extra: Any,
    ) -> None:
        """Empty URLs are left unset: `kiln dev` then takes SQLite and its in-process bus."""
        self.workdir = workdir
        self.started = started
        self.blob_root = workdir / "blobs"
        self.secret = secrets.token_hex(32)
        self.token = mint_token(self.secret, BENCH_SUBJECT)
        self.headers = {"Authorization": f"Bearer {self.token}"}
        self._spawned: dict[str, int] = {}
        self.settings: dict[str, Any] = {
            "database_url": database_url,
            "broker_url": broker_url,
            "storage_url": f"file://{self.blob_root}",
            "data_dir": str(workdir / "data"),
            "import_allowed_hosts": "127.0.0.1",
            "log_format": "json",
            "worker_http_port": 0,
            "token_secret": self.secret,
            "admins": BENCH_SUBJECT,
            **extra,
        }

    def env(self, **overrides: Any) -> dict[str, str]:
        values = {**self.settings, **overrides}
        return clean_env(**{f"KILN_{k.upper()}": str(v) for k, v in values.items() if v != ""})

    async def _spawn(self, role: str, env: dict[str, str]) -> Child:
        index = self._spawned[role] = self._spawned.get(role, -1) + 1  # before any await
        child = await Child.spawn(
            f"kiln {role} {index}",
            [str(BIN / "kiln"), role],
            self.workdir / f"{role}-{index}.log",
            env,
        )
        self.started.append(child)
        return child

    async def gateway(self, **overrides: Any) -> Child:
        port = free_port()
        child = await self._spawn("gateway", self.env(http_port=port, **overrides))
        await child.wait_port(port)
        return child

    async def worker(self, **overrides: Any) -> Child:
        child = await self._spawn("worker", self.env(**overrides))
        await child.wait_text('"worker.started"')
        return child

    async def dev(self, **overrides: Any) -> Child:
        """`kiln dev`: gateway and worker in one process, SQLite and the in-process bus."""
        port = free_port()
        child = await self._spawn("dev", self.env(http_port=port, **overrides))
        await child.wait_port(port)
        return child


@contextlib.asynccontextmanager
async def py_spy(child: Child, path: Path | None) -> AsyncIterator[None]:
    """Sample `child` with py-spy (100 Hz, speedscope JSON at `path`) while the block runs;
    nothing when `path` is None. py-spy must be installed (bench/requirements.txt)."""
    if path is None:
        yield
        return
    spy = await asyncio.create_subprocess_exec(
        str(BIN / "py-spy"),
        *("record", "-p", str(child.pid), "-r", "100", "-f", "speedscope", "-o", str(path)),
        "--nonblocking",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        if spy.returncode is None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            try:
                await asyncio.wait_for(spy.wait(), 30)
            except TimeoutError:
                spy.kill()
                await spy.wait()


async def python_module(
    started: list[Child], workdir: Path, name: str, module: str, *args: str, port: int
) -> Child:
    """`python -m module args…` (a floor server or the image source), once it listens on `port`."""
    child = await Child.spawn(
        name,
        [sys.executable, "-m", module, "--port", str(port), *args],
        workdir / f"{name}.log",
        clean_env(PYTHONPATH=str(Path(__file__).resolve().parent.parent)),
    )
    started.append(child)
    await child.wait_port(port)
    return child


async def image_source(started: list[Child], workdir: Path, qcow2_sizes: str = "") -> Child:
    """The local image server (bench/sources.py): raw streams of any size, and qcow2 files of
    `qcow2_sizes` (comma-separated bytes; none by default)."""
    args = ("--workdir", str(workdir), "--qcow2-sizes", qcow2_sizes)
    return await python_module(
        started, workdir, "image-source", "bench.sources", *args, port=free_port()
    )


async def moto_server(started: list[Child], workdir: Path) -> Child:
    """A local `moto_server` (AWS EC2 and friends) on 127.0.0.1."""
    port = free_port()
    child = await Child.spawn(
        "moto_server",
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        workdir / "moto_server.log",
        clean_env(),
    )
    started.append(child)
    await child.wait_port(port)
    return child
