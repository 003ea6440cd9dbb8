"""Real `kiln gateway` and `kiln worker` processes for fault tests: started with KILN_* settings,
waited for through what they expose (a listening port, a JSON log line), stopped or killed."""

import asyncio
import contextlib
import inspect
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from support import auth

KILN = Path(sys.executable).parent / "kiln"
START_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def accepts(port: int) -> bool:
    """True once something listens on 127.0.0.1:`port`."""
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


async def wait_until(check: Callable[[], Any], timeout: float, what: str = "condition") -> Any:
    """Poll `check` (a function or a coroutine function) until it gives something truthy; fail
    after `timeout` seconds naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout} s")
        await asyncio.sleep(0.05)  # polling an observable condition of other processes


class KilnProcess:
    """One `kiln <role>` process; its stdout and stderr (JSON log lines) go to `log_path`."""

    def __init__(self, role: str, process: asyncio.subprocess.Process, log_path: Path) -> None:
        self.role = role
        self.process = process
        self.log_path = log_path
        self.port: int | None = None
        self.killed_at_stop = False

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    @property
    def url(self) -> str:
        assert self.port is not None, f"kiln {self.role} serves no HTTP"
        return f"http://127.0.0.1:{self.port}"

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def logs(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far (other lines, e.g. from `logging`, skipped)."""
        entries = []
        for line in self.text().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(orjson.JSONDecodeError):
                    entries.append(orjson.loads(line))
        return entries

    def logged(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        return [
            entry
            for entry in self.logs()
            if entry.get("event") == event and all(entry.get(k) == v for k, v in fields.items())
        ]

    async def wait_logged(self, event: str, timeout: float, **fields: Any) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            if not self.running:
                raise AssertionError(f"kiln {self.role} exited early:\n{self.text()[-3000:]}")
            hits = self.logged(event, **fields)
            return hits[0] if hits else None

        return await wait_until(found, timeout, f"kiln {self.role} logging {event!r}")  # type: ignore[no-any-return]

    async def wait_text(self, text: str, timeout: float) -> None:
        """Wait for `text` anywhere in the output (libraries' plain-text log lines too)."""
        await wait_until(lambda: text in self.text(), timeout, f"kiln {self.role} writing {text!r}")

    async def wait_listening(self, timeout: float = START_TIMEOUT) -> None:
        async def listening() -> bool:
            if not self.running:
                raise AssertionError(f"kiln {self.role} exited early:\n{self.text()[-3000:]}")
            return await accepts(self.port)

        await wait_until(listening, timeout, f"kiln {self.role} listening on {self.port}")

    def importing(self) -> set[str]:
        """Operations this worker started fetching for and has not settled (from its logs)."""
        opened = {entry["operation_id"] for entry in self.logged("source.open")}
        settled = {entry["operation_id"] for entry in self.logged("image.import_settled")}
        return opened - settled

    def kill(self) -> None:
        """SIGKILL: no drain, no cleanup, as a crash or the OOM killer would."""
        self.process.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    async def wait(self, timeout: float) -> int:
        return await asyncio.wait_for(self.process.wait(), timeout)

    async def stop(self, timeout: float = 40.0) -> int:
        """SIGTERM and wait; SIGKILL if it outlives `timeout`. The exit code."""
        if self.running:
            self.terminate()
            try:
                await self.wait(timeout)
            except TimeoutError:
                self.killed_at_stop = True
                self.kill()
                await self.process.wait()
        assert self.process.returncode is not None
        return self.process.returncode


class Deployment:
    """Gateways and workers sharing one database, one broker vhost and one blob directory.
    The gateways accept the tests' tokens (`support.auth.bearer()`), admin's included."""

    def __init__(self, workdir: Path, *, database_url: str, broker_url: str, **settings: Any):
        self.workdir = workdir
        self.blob_root = workdir / "blobs"
        self.settings: dict[str, Any] = {
            "database_url": database_url,
            "broker_url": broker_url,
            "storage_url": f"file://{self.blob_root}",
            "data_dir": str(workdir / "data"),
            "import_allowed_hosts": "127.0.0.1",
            "log_format": "json",
            "worker_http_port": 0,  # no side port: workers of one host would contend for it
            **auth.SETTINGS,
            **settings,
        }
        self.processes: list[KilnProcess] = []

    def env(self, **overrides: Any) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KILN_")}
        for name, value in {**self.settings, **overrides}.items():
            env[f"KILN_{name.upper()}"] = str(value)
        return env

    async def _spawn(self, role: str, env: dict[str, str]) -> KilnProcess:
        index = sum(1 for p in self.processes if p.role == role)
        log_path = self.workdir / f"{role}-{index}.log"
        with log_path.open("w") as log:  # the child keeps its own descriptor
            process = await asyncio.create_subprocess_exec(
                str(KILN),
                role,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                cwd=self.workdir,
            )
        started = KilnProcess(role, process, log_path)
        self.processes.append(started)
        return started

    async def start_gateway(self, **overrides: Any) -> KilnProcess:
        """A gateway, started: it may not accept connections yet."""
        port = free_port()
        gateway = await self._spawn("gateway", self.env(http_port=port, **overrides))
        gateway.port = port
        return gateway

    async def gateway(self, **overrides: Any) -> KilnProcess:
        """A gateway, once it accepts connections."""
        gateway = await self.start_gateway(**overrides)
        await gateway.wait_listening()
        return gateway

    async def worker(self, environ: dict[str, str] | None = None, **overrides: Any) -> KilnProcess:
        """A worker, once it consumes its queues; `environ`: more environment variables."""
        worker = await self._spawn("worker", {**self.env(**overrides), **(environ or {})})
        await worker.wait_logged("worker.started", START_TIMEOUT)
        return worker

    def blob_files(self) -> list[Path]:
        return sorted(p for p in (self.blob_root / "sha256").rglob("*") if p.is_file())

    def temp_files(self) -> list[Path]:
        return sorted((self.blob_root / "tmp").glob("*"))

    async def unsent_outbox(self) -> int:
        """Outbox rows not yet confirmed by the broker (PostgreSQL store)."""
        conn = await asyncpg.connect(self.settings["database_url"])
        try:
            count = await conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
        finally:
            await conn.close()
        return int(count)

    async def leased_by(self, worker: "KilnProcess") -> set[str]:
        """Open operations whose lease the worker holds (expired or not)."""
        worker_id = worker.logged("worker.started")[0]["worker_id"]
        conn = await asyncpg.connect(self.settings["database_url"])
        try:
            rows = await conn.fetch(
                "SELECT id FROM operations WHERE done = 0 AND lease_owner = $1", worker_id
            )
        finally:
            await conn.close()
        return {row["id"] for row in rows}

    async def outbox_drained(self) -> bool:
        return await self.unsent_outbox() == 0

    async def close(self, timeout: float = 40.0) -> list[str]:
        """Stop what still runs, workers first; what did not stop cleanly on SIGTERM."""
        running = [p for p in self.processes if p.running]
        for role in ("worker", "gateway"):
            await asyncio.gather(*(p.stop(timeout) for p in running if p.role == role))
        return [
            f"kiln {p.role} [{p.pid}] exited with {p.process.returncode}"
            + (
                f" after SIGKILL ({timeout} s without exiting on SIGTERM)"
                if p.killed_at_stop
                else ""
            )
            for p in running
            if p.process.returncode != 0
        ]

    def errors(self, *allowed: str) -> list[str]:
        """Kiln's own log entries, in every process, at level error or carrying a traceback
        (the libraries' plain-text lines about a lost connection are not counted)."""
        return [
            f"{p.role}-{index}: {entry}"
            for index, p in enumerate(self.processes)
            for entry in p.logs()
            if (entry.get("level") in ("error", "critical") or "exception" in entry)
            and entry.get("event") not in allowed
        ]


@contextlib.asynccontextmanager
async def deployed(
    workdir: Path, *, database_url: str, broker_url: str, **settings: Any
) -> AsyncIterator[Deployment]:
    """A Deployment whose processes must all stop cleanly once the block ends."""
    kiln = Deployment(workdir, database_url=database_url, broker_url=broker_url, **settings)
    try:
        yield kiln
    finally:
        # Every process is gone before the database and the vhost are dropped.
        unclean = await kiln.close()
    assert unclean == [], "processes that did not stop cleanly at the end of the test"
