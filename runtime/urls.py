"""Image source URLs: everything that can be decided without DNS, in one implementation for the
gateway (which refuses before anything is stored) and the worker (which checks every URL it
fetches, redirects included, and then each address DNS gives for a host).

Loopback, private, link-local, multicast, reserved and cloud-metadata addresses are refused
(also when spelled as IPv4-mapped IPv6, 6to4, NAT64 or legacy IPv4 forms such as 2130706433,
0177.0.0.1 or 0x7f.1) unless an operator allow-lists the host or a network containing the
address, on every port or on one. Hosts that the worker's HTTP client cannot use (empty or
over-long labels, port 0, a legacy IPv4 form it will not connect to) are refused as well."""

import functools
import ipaddress
import re
import socket
from typing import NamedTuple

from yarl import URL

from contracts.errors import Code

SCHEMES = ("http", "https", "file")
HTTP_SCHEMES = ("http", "https")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_METADATA = frozenset(map(ipaddress.ip_address, ("169.254.169.254", "fd00:ec2::254")))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_HOST_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_MAX_HOST = 253  # the longest DNS name
_MAX_LABEL = 63  # the longest label between its dots
_HOST_PORT = re.compile(r"(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]]+))(:(?P<port>\d+))?")


class UrlRefused(Exception):
    """A source URL that must not be fetched: the gRPC code and a message for the caller."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse(text: str) -> URL:
    try:
        return URL(text)
    except ValueError as exc:
        raise UrlRefused(Code.INVALID_ARGUMENT, f"URL is malformed: {exc}") from None


def check_url(url: URL, schemes: tuple[str, ...] = SCHEMES) -> None:
    """Scheme, credentials and host of `url`, before any address is looked at."""
    if url.scheme not in schemes:
        raise UrlRefused(
            Code.FAILED_PRECONDITION,
            f"URL scheme {url.scheme or '(none)'!r} is not supported (use {', '.join(schemes)})",
        )
    if url.user is not None or url.password is not None:
        raise UrlRefused(Code.INVALID_ARGUMENT, "URL must not carry user credentials")
    if url.scheme != "file" and not url.raw_host:
        raise UrlRefused(Code.INVALID_ARGUMENT, "URL has no host")
    if url.port == 0:
        raise UrlRefused(Code.INVALID_ARGUMENT, "URL port 0 is not valid")


def literal_address(host: str) -> IPAddress | None:
    """The address `host` spells, including the legacy IPv4 forms the C library accepts; None
    for a host name. A host of digits and dots that is no address is refused: a client would
    connect to it directly, bypassing any resolver."""
    if len(host) > _MAX_HOST:
        raise UrlRefused(Code.INVALID_ARGUMENT, f"host is longer than {_MAX_HOST} characters")
    return _literal_address(host)


# Parsing and classifying addresses is a few dozen microseconds each; a batch import checks
# the same few hosts thousands of times (hosts are short, so the cache stays small).
@functools.lru_cache(maxsize=1024)
def _literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        pass
    if host.replace(".", "").isdigit():
        raise UrlRefused(Code.INVALID_ARGUMENT, f"host {host!r} is not a valid address")
    if not _HOST_NAME.fullmatch(host):
        raise UrlRefused(Code.INVALID_ARGUMENT, f"host {host!r} is malformed")
    if not all(0 < len(label) <= _MAX_LABEL for label in host.removesuffix(".").split(".")):
        raise UrlRefused(
            Code.INVALID_ARGUMENT,
            f"host {host!r} is malformed: each label between its dots must be 1 to"
            f" {_MAX_LABEL} characters",
        )
    return None


def check_spelling(host: str) -> None:
    """A host of digits and dots must be a dotted quad: aiohttp refuses to connect to the
    legacy forms (`127.1`, `2130706433`, `0177.0.0.1`), so no worker could fetch from it."""
    if host.replace(".", "").isdigit() and str(_literal_address(host)) != host:
        raise UrlRefused(
            Code.INVALID_ARGUMENT,
            f"host {host!r} is not a dotted-quad IPv4 address (write {_literal_address(host)})",
        )


@functools.lru_cache(maxsize=1024)
def blocked_reason(address: IPAddress) -> str | None:
    """Why `address` must not be fetched from, or None when it is a public address."""
    if address in _METADATA:
        return "a cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or _nat64(address)
        if embedded is not None:
            return blocked_reason(embedded)
    for reason, hit in (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
    ):
        if hit:
            return reason
    return None if address.is_global else "not globally routable"


def _nat64(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


class Allowed(NamedTuple):
    """One allow-list entry: a host name or a network, on one port or (None) on every port."""

    name: str
    network: IPNetwork | None
    port: int | None


def allowed_entry(entry: str) -> Allowed:
    """One `KILN_IMPORT_ALLOWED_HOSTS` entry: a host name, an address or a CIDR exempts every
    port; `host:port`, `address:port` or `[IPv6]:port` only that port. Raises ValueError."""
    try:
        return Allowed("", ipaddress.ip_network(entry, strict=False), None)
    except ValueError as exc:
        if "/" in entry:
            raise ValueError(f"{entry!r} is not a CIDR: {exc}") from None
    match = _HOST_PORT.fullmatch(entry)
    if match is None:
        raise ValueError(f"{entry!r} is not a host, address or CIDR (or host:port, [IPv6]:port)")
    port = int(match["port"]) if match["port"] else None
    if port is not None and not 0 < port <= 65535:
        raise ValueError(f"{entry!r}: the port must be 1 to 65535")
    try:
        host = match["ipv6"] or URL.build(scheme="http", host=match["host"]).raw_host or ""
        address = literal_address(host)
    except UrlRefused as exc:
        raise ValueError(f"{entry!r}: {exc.message}") from None
    except ValueError:  # a host yarl cannot encode
        raise ValueError(f"{entry!r}: host {match['host']!r} is malformed") from None
    if address is not None:
        return Allowed("", ipaddress.ip_network(address), port)
    return Allowed(host.rstrip("."), None, port)


@functools.lru_cache(maxsize=16)
def _allow_list(allowed_hosts: tuple[str, ...]) -> tuple[Allowed, ...]:
    return tuple(map(allowed_entry, allowed_hosts))


def allows_host(host: str, port: int, allowed_hosts: tuple[str, ...]) -> bool:
    """Whether the operator exempted this host by name (every address it resolves to) on
    this port."""
    name = host.lower().rstrip(".")
    return any(
        entry.name == name and entry.port in (None, port) for entry in _allow_list(allowed_hosts)
    )


def check_address(host: str, address: IPAddress, port: int, allowed_hosts: tuple[str, ...]) -> None:
    """Refuse a blocked address of `host` unless an allow-listed network contains it (on
    this port)."""
    reason = blocked_reason(address)
    if reason and not any(
        entry.network is not None and address in entry.network and entry.port in (None, port)
        for entry in _allow_list(allowed_hosts)
    ):
        raise UrlRefused(Code.PERMISSION_DENIED, f"address {address} of host {host} is {reason}")


def check_source(text: str, allowed_hosts: tuple[str, ...]) -> URL:
    """Everything about a create's `uri` that is known before DNS: scheme, credentials, host
    and port, and an address spelled in the host. What the host resolves to, and where
    redirects lead, only the worker can know."""
    url = parse(text)
    check_url(url)
    if url.scheme not in HTTP_SCHEMES:
        return url
    host, port = url.raw_host or "", url.port or 0
    address = literal_address(host)
    if address is not None and not allows_host(host, port, allowed_hosts):
        check_address(host, address, port, allowed_hosts)
    check_spelling(host)
    return url
