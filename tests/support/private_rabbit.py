"""A RabbitMQ node of one test's own: `rabbitmq-server` on free ports with its own data
directory, for broker settings a test must not change on the shared node (consumer_timeout)."""

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from support.kiln_processes import accepts, free_port, wait_until
from support.rabbit import rabbitmqctl

BOOT_SECONDS = 60.0


class RabbitNode:
    """One `rabbitmq-server` launched with RABBITMQ_* variables: AMQP on 127.0.0.1:`port`,
    Erlang distribution on `dist_port`, its rabbitmq.conf (`config`), advanced.config, data,
    logs and pid file under `workdir`. It runs as the rabbitmq user, as the shared node does
    (same Erlang cookie), and no plugin is enabled."""

    def __init__(
        self,
        workdir: Path,
        name: str,
        port: int,
        dist_port: int,
        config: dict[str, str],
        advanced: str = "[].",
    ) -> None:
        self.workdir = workdir
        self.name = name
        self.port = port
        self.dist_port = dist_port
        self.config = {"listeners.tcp.default": f"127.0.0.1:{port}", **config}
        self.advanced = advanced
        self.server: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        """The AMQP URL of the default vhost, as guest (allowed from loopback only)."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def running(self) -> bool:
        """Whether the launcher runs: it exits once the Erlang VM has."""
        return self.server is not None and self.server.returncode is None

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(self.workdir / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.workdir / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.workdir / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.workdir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.workdir / "log"),
            "RABBITMQ_PID_FILE": str(self.workdir / "node.pid"),
            # A VM that fails to boot dumps into its working directory, the shared node's.
            "ERL_CRASH_DUMP": str(self.workdir / "erl_crash.dump"),
        }

    async def start(self) -> None:
        """Write the node's files and launch it; return at once (see `wait_booted`)."""
        # rabbitmq-server drops to the rabbitmq user: the directory must be open to it.
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o777)
        conf = "".join(f"{key} = {value}\n" for key, value in self.config.items())
        (self.workdir / "rabbitmq.conf").write_text(conf)
        (self.workdir / "advanced.config").write_text(self.advanced + "\n")
        (self.workdir / "enabled_plugins").write_text("[].\n")
        with (self.workdir / "server.out").open("w") as out:
            self.server = await asyncio.create_subprocess_exec(
                "rabbitmq-server",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=self.env(),
            )

    async def booted(self) -> bool:
        """Whether the node accepts AMQP connections (it opens its listener last when it
        boots); AssertionError if it has exited."""
        if not self.running:
            output = (self.workdir / "server.out").read_text(errors="replace")
            raise AssertionError(f"RabbitMQ node {self.name} exited:\n{output[-3000:]}")
        return await accepts(self.port)

    async def wait_booted(self, timeout: float = BOOT_SECONDS) -> None:
        """Return once the node has booted; fail at once if it exits meanwhile."""
        await wait_until(self.booted, timeout, f"RabbitMQ node {self.name} booted")

    def vm_pid(self) -> int | None:
        """The OS pid of the node's Erlang VM, from its pid file: None until the VM wrote it."""
        try:
            return int((self.workdir / "node.pid").read_text())
        except (OSError, ValueError):
            return None

    async def stop(self) -> None:
        """`rabbitmqctl stop`, a clean shutdown; SIGKILL if the node outlives BOOT_SECONDS."""
        assert self.server is not None
        if self.running:
            with contextlib.suppress(RuntimeError):
                await rabbitmqctl("-n", self.name, "stop")
        try:
            await asyncio.wait_for(self.server.wait(), BOOT_SECONDS)
        except TimeoutError:
            await self.kill()

    async def kill(self) -> None:
        """SIGKILL the Erlang VM, as a machine dying would (no clean shutdown: the other nodes
        see its connections drop); return once its launcher, which waits for it, is gone."""
        if not self.running:
            return  # its pid, if it wrote one, may be another process's by now
        assert self.server is not None
        # The VM writes its pid file early in its boot; one booting still may not have yet.
        await wait_until(lambda: self.vm_pid() or not self.running, BOOT_SECONDS, "a pid file")
        pid = self.vm_pid()
        if pid is not None:
            # The VM runs on under the rabbitmq user when its launcher dies: kill it first.
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        try:
            await asyncio.wait_for(self.server.wait(), BOOT_SECONDS)
        except TimeoutError:
            self.server.kill()
            await self.server.wait()


@contextlib.asynccontextmanager
async def private_rabbit(config: dict[str, str], advanced: str = "[].") -> AsyncIterator[str]:
    """A fresh node with `config` as its rabbitmq.conf and `advanced` as its advanced.config;
    yields the AMQP URL of its default vhost. The node is stopped and its files removed after."""
    workdir = Path(tempfile.mkdtemp(prefix="kiln-rabbit-"))
    name = f"kiln-test-{uuid.uuid4().hex[:12]}@localhost"
    node = RabbitNode(workdir, name, free_port(), free_port(), config, advanced)
    try:
        await node.start()
        await node.wait_booted()
        yield node.url
    finally:
        if node.server is not None:
            await node.stop()
        shutil.rmtree(workdir, ignore_errors=True)
