"""A PostgreSQL server and a RabbitMQ node of the work count's own, so that what they count
(pg_stat_statements, which must be preloaded; the broker's message totals, from its Prometheus
plugin) and the CPU time of their processes are Kiln's alone."""

import asyncio
import contextlib
import os
import pwd
import re
import shutil
import signal
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from bench.processes import free_port, port_open, wait_until

PG_BIN = Path("/usr/lib/postgresql/15/bin")
BOOT_SECONDS = 60.0
_SAMPLE = re.compile(r"^(rabbitmq_global_messages_[a-z_]+_total)\{[^}]*\} (\S+)$", re.M)


def process_cpu(pid: int, *, reaped_children: bool = False) -> float:
    """User + system CPU seconds of `pid` (all its threads), and of its children that exited
    and were waited for when `reaped_children`."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


class PrivatePostgres:
    def __init__(self, workdir: Path) -> None:
        self.data = workdir / "data"
        self.port = free_port()

    def url(self, database: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def cpu_seconds(self) -> float:
        """The server's CPU time: the postmaster, its live backends and those that ended."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        total = process_cpu(postmaster, reaped_children=True)
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError):
                    fields = (entry / "stat").read_text().rpartition(")")[2].split()
                    if int(fields[1]) == postmaster:
                        total += process_cpu(int(entry.name))
        return total


@contextlib.asynccontextmanager
async def private_postgres() -> AsyncIterator[PrivatePostgres]:
    """initdb, pg_stat_statements preloaded, durability as a server's default (fsync on)."""
    workdir = Path(tempfile.mkdtemp(prefix="kiln-bench-pg-"))
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(workdir, account.pw_uid, account.pw_gid)
    server = PrivatePostgres(workdir)
    try:
        await _as_postgres("initdb", "-D", server.data, "-U", "postgres", "-A", "trust")
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(server.port),
            "unix_socket_directories": "''",
            "max_connections": "100",
            "shared_preload_libraries": "'pg_stat_statements'",
            "pg_stat_statements.track": "all",
            "pg_stat_statements.max": "1000",
        }
        with (server.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())
        log = workdir / "server.log"
        await _as_postgres("pg_ctl", "start", "-w", "-D", server.data, "-l", log)
        yield server
    finally:
        with contextlib.suppress(RuntimeError):
            await _as_postgres("pg_ctl", "stop", "-m", "immediate", "-D", server.data)
        shutil.rmtree(workdir, ignore_errors=True)


async def _as_postgres(program: str, *args: str | Path) -> None:
    prefix = ("runuser", "-u", "postgres", "--") if os.geteuid() == 0 else ()
    process = await asyncio.create_subprocess_exec(
        *prefix,
        str(PG_BIN / program),
        *map(str, args),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{program}: {output.decode()}")


class PrivateRabbit:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.name = f"kiln-bench-{uuid.uuid4().hex[:12]}@localhost"
        self.port = free_port()
        self.metrics_port = free_port()

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def cpu_seconds(self) -> float:
        return process_cpu(self._vm_pid())

    async def message_totals(self) -> dict[str, float]:
        """The node's message counters (received, confirmed, routed, delivered, acknowledged…),
        summed over protocols."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            text = await response.text()
        totals: dict[str, float] = {}
        for name, value in _SAMPLE.findall(text):
            short = name.removeprefix("rabbitmq_global_messages_").removesuffix("_total")
            totals[short] = totals.get(short, 0.0) + float(value)
        return totals

    def _vm_pid(self) -> int:
        return int((self.workdir / "node.pid").read_text())


@contextlib.asynccontextmanager
async def private_rabbit() -> AsyncIterator[PrivateRabbit]:
    """A fresh node with the Prometheus plugin on a port of its own; killed afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix="kiln-bench-rabbit-"))
    workdir.chmod(0o777)  # rabbitmq-server drops to the rabbitmq user
    node = PrivateRabbit(workdir)
    conf = {
        "listeners.tcp.default": f"127.0.0.1:{node.port}",
        "prometheus.tcp.port": node.metrics_port,
    }
    (workdir / "rabbitmq.conf").write_text("".join(f"{k} = {v}\n" for k, v in conf.items()))
    (workdir / "enabled_plugins").write_text("[rabbitmq_prometheus].\n")
    env = {
        **os.environ,
        "RABBITMQ_NODENAME": node.name,
        "RABBITMQ_NODE_PORT": str(node.port),
        "RABBITMQ_DIST_PORT": str(free_port()),
        "RABBITMQ_CONFIG_FILE": str(workdir / "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(workdir / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(workdir / "mnesia"),
        "RABBITMQ_LOG_BASE": str(workdir / "log"),
        "RABBITMQ_PID_FILE": str(workdir / "node.pid"),
        "ERL_CRASH_DUMP": str(workdir / "erl_crash.dump"),
    }
    with (workdir / "server.out").open("w") as out:
        server = await asyncio.create_subprocess_exec(
            "rabbitmq-server", stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out, env=env
        )
    try:
        await wait_until(lambda: port_open(node.port), BOOT_SECONDS, "private RabbitMQ booted")
        await wait_until(lambda: port_open(node.metrics_port), BOOT_SECONDS, "its metrics")
        yield node
    finally:
        with contextlib.suppress(OSError, ValueError):
            os.kill(node._vm_pid(), signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            server.kill()
        await server.wait()
        shutil.rmtree(workdir, ignore_errors=True)
