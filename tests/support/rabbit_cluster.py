"""A RabbitMQ cluster of one test's own: several `rabbitmq-server` nodes on 127.0.0.1, each on
free ports with its own data directory, clustered together, for faults that take a node away
(quorum queues keep their messages, clients move to another node)."""

import asyncio
import contextlib
import json
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from support.kiln_processes import free_port, wait_until
from support.private_rabbit import BOOT_SECONDS, RabbitNode
from support.rabbit import rabbitmqctl

# The followers retry joining the first node until it boots (they boot alongside it).
JOIN_RETRIES = 240
JOIN_RETRY_MS = 250


class RabbitCluster:
    """Nodes clustered together; the guest user and the default vhost are the cluster's.
    Indexes are positions in `nodes`, the first node first."""

    def __init__(self, nodes: list[RabbitNode]) -> None:
        self.nodes = nodes

    @property
    def urls(self) -> list[str]:
        """Each node's AMQP URL (default vhost, guest)."""
        return [node.url for node in self.nodes]

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def node_names(self) -> list[str]:
        return [node.name for node in self.nodes]

    def multi_host_url(self) -> str:
        """One AMQP URL listing every node the way PostgreSQL's list hosts."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.ports)
        return f"amqp://guest:guest@{hosts}/"

    async def kill(self, index: int) -> None:
        """SIGKILL the node's Erlang VM, as a machine dying would; return once it is gone."""
        await self.nodes[index].kill()

    async def stop(self, index: int) -> None:
        """Stop the node cleanly (`rabbitmqctl stop`); return once it is gone."""
        await self.nodes[index].stop()

    async def running_nodes(self) -> list[str]:
        """The nodes running in the cluster, as the first live node's `cluster_status` says."""
        status = json.loads(await self._ctl("cluster_status", "--formatter", "json"))
        return [name for name in self.node_names if name in status["running_nodes"]]

    async def queue_members(self, queue: str, vhost: str = "/") -> list[str]:
        """The nodes holding a replica of a quorum queue, sorted."""
        return sorted(await self._queue(queue, vhost, "members"))

    async def queue_leader(self, queue: str, vhost: str = "/") -> str:
        """The node holding the leader replica of a quorum queue."""
        return str(await self._queue(queue, vhost, "leader"))

    async def _queue(self, queue: str, vhost: str, column: str) -> Any:
        listed = await self._ctl("list_queues", "-p", vhost, "name", column, "--formatter", "json")
        for entry in json.loads(listed):
            if entry["name"] == queue:
                return entry[column]
        raise LookupError(f"no queue {queue!r} in vhost {vhost!r}")

    async def _ctl(self, *args: str) -> str:
        """rabbitmqctl against the first node that runs and answers."""
        failures = []
        for node in self.nodes:
            if node.running:
                try:
                    return await rabbitmqctl("-n", node.name, *args)
                except RuntimeError as exc:
                    failures.append(str(exc))
        raise RuntimeError(f"no node of the cluster answers: {failures}")

    async def booted(self) -> bool:
        """Whether every node has booted; AssertionError as soon as one has exited."""
        return all([await node.booted() for node in self.nodes])  # each one, to see it exit

    async def formed(self) -> bool:
        """Whether every node runs in the cluster."""
        return await self.running_nodes() == self.node_names


@contextlib.asynccontextmanager
async def rabbit_cluster(size: int = 3) -> AsyncIterator[RabbitCluster]:
    """`size` fresh nodes, booted together and clustered: the others join the first as they
    boot (classic_config peer discovery). Every node is killed and the files removed after,
    whatever happened."""
    workdir = Path(tempfile.mkdtemp(prefix="kiln-rabbit-cluster-"))
    workdir.chmod(0o755)  # the nodes run as the rabbitmq user, in directories under it
    cluster_id = uuid.uuid4().hex[:12]
    names = [f"kiln-test-{cluster_id}-{index}@localhost" for index in range(size)]
    ports = _distinct_free_ports(2 * size)
    nodes = [
        RabbitNode(
            workdir / f"node{index}",
            name,
            ports[2 * index],
            ports[2 * index + 1],
            _joining(names[0], name) if index else {},
        )
        for index, name in enumerate(names)
    ]
    cluster = RabbitCluster(nodes)
    try:
        for node in nodes:
            await node.start()
        await wait_until(cluster.booted, BOOT_SECONDS, f"RabbitMQ nodes {names} booted")
        await wait_until(cluster.formed, BOOT_SECONDS, f"RabbitMQ cluster of {names}")
        yield cluster
    finally:
        await _kill_all(nodes)
        shutil.rmtree(workdir, ignore_errors=True)


def _joining(first: str, name: str) -> dict[str, str]:
    """rabbitmq.conf settings for a node to join `first` when it boots. Listing itself too, it
    takes the discovery lock on both, so that the nodes joining at once join one at a time."""
    return {
        "cluster_formation.peer_discovery_backend": "classic_config",
        "cluster_formation.classic_config.nodes.1": first,
        "cluster_formation.classic_config.nodes.2": name,
        "cluster_formation.discovery_retry_limit": str(JOIN_RETRIES),
        "cluster_formation.discovery_retry_interval": str(JOIN_RETRY_MS),
    }


def _distinct_free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


async def _kill_all(nodes: list[RabbitNode]) -> None:
    """Kill the launched nodes together (their data is thrown away: a clean stop of a cluster
    short of nodes takes seconds); raise the first failure once every one is gone."""
    kills = (node.kill() for node in nodes if node.server is not None)
    for result in await asyncio.gather(*kills, return_exceptions=True):
        if isinstance(result, BaseException):
            raise result
