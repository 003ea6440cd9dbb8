"""Broker URLs: one AMQP URL per node of a RabbitMQ cluster, from one URL that may list several
hosts the way PostgreSQL's do (`amqp://user:password@node1:5672,node2:5672/vhost`)."""

import re

import msgspec
from yarl import URL

RECONNECT_PARAMETER = "reconnect_interval"  # as aio-pika spells it
RECONNECT_SECONDS = 2.0
_AUTHORITY = re.compile(r"([^/?#]*)(.*)", re.S)  # the authority ends at the path, query or fragment


class BrokerUrlError(ValueError):
    """The URL does not name a scheme and a host for every node."""


class BrokerNodes(msgspec.Struct, frozen=True):
    """Where the broker is: every node's URL, in the order given, and how long to wait after
    each of them was tried and none answered."""

    urls: tuple[URL, ...]
    reconnect_seconds: float


def broker_nodes(url: str) -> BrokerNodes:
    """Every host of `url` as a URL of its own, with the credentials, vhost and query of `url`
    (less `reconnect_interval`, which is Kiln's: seconds, default 2)."""
    scheme, separator, rest = url.partition("://")
    if not separator or scheme not in ("amqp", "amqps"):
        raise BrokerUrlError("needs amqp:// or amqps://")
    authority, tail = _AUTHORITY.match(rest).groups()  # type: ignore[union-attr]
    userinfo, at, host_list = authority.rpartition("@")
    hosts = host_list.split(",")
    nodes = [_parse(f"{scheme}://{userinfo}{at}{host}{tail}") for host in hosts]
    interval = nodes[0].query.get(RECONNECT_PARAMETER)
    return BrokerNodes(
        urls=tuple(node.without_query_params(RECONNECT_PARAMETER) for node in nodes),
        reconnect_seconds=RECONNECT_SECONDS if interval is None else _seconds(interval),
    )


def _parse(text: str) -> URL:
    try:
        url = URL(text)
        host, _ = url.host, url.port  # a bad port raises only when read
    except ValueError as exc:
        raise BrokerUrlError(f"cannot parse a node of it: {exc}") from exc
    if not host:
        raise BrokerUrlError(
            "every node needs a host: amqp://user:password@host:port,host:port/vhost"
        )
    return url


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= 3600:
        raise BrokerUrlError(f"{RECONNECT_PARAMETER} must be seconds in (0, 3600], got {text!r}")
    return seconds
