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


@contextlib.asynccontextmanager
async def private_rabbit(config: dict[str, str], advanced: str = "[].") -> AsyncIterator[str]:
    """A fresh node with `config` as its rabbitmq.conf and `advanced` as its advanced.config;
    yields the AMQP URL of its default vhost. The node is stopped and its files removed after."""
    # rabbitmq-server drops to the rabbitmq user: the directory must be open to it.
    workdir = Path(tempfile.mkdtemp(prefix="kiln-rabbit-"))
    workdir.chmod(0o777)
    node = f"kiln-test-{uuid.uuid4().hex[:12]}@localhost"
    port = free_port()
    settings = {"listeners.tcp.default": f"127.0.0.1:{port}", **config}
    (workdir / "rabbitmq.conf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
    (workdir / "advanced.config").write_text(advanced + "\n")
    (workdir / "enabled_plugins").write_text("[].\n")
    env = {
        **os.environ,
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(free_port()),
        "RABBITMQ_CONFIG_FILE": str(workdir / "rabbitmq.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(workdir / "advanced.config"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(workdir / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(workdir / "mnesia"),
        "RABBITMQ_LOG_BASE": str(workdir / "log"),
        "RABBITMQ_PID_FILE": str(workdir / "node.pid"),
    }
    with (workdir / "server.out").open("w") as out:
        server = await asyncio.create_subprocess_exec(
            "rabbitmq-server", stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out, env=env
        )
    try:
        # The node opens its AMQP listener last when it boots.
        await wait_until(lambda: accepts(port), BOOT_SECONDS, f"RabbitMQ node {node} booted")
        yield f"amqp://guest:guest@127.0.0.1:{port}/"
    finally:
        with contextlib.suppress(RuntimeError):
            await rabbitmqctl("-n", node, "stop")
        try:
            await asyncio.wait_for(server.wait(), BOOT_SECONDS)
        except TimeoutError:
            _kill_node(workdir / "node.pid")
            server.kill()
            await server.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def _kill_node(pid_file: Path) -> None:
    """Kill the node's Erlang VM, which runs on under the rabbitmq user when its launcher dies."""
    with contextlib.suppress(OSError, ValueError):
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
