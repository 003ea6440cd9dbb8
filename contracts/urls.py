"""Image source URLs: everything that can be decided without DNS, in one implementation for the
gateway (which refuses before anything is stored) and the worker (which checks every URL it
fetches, redirects included, and then each address DNS gives for a host).

Loopback, private, link-local, multicast, reserved and cloud-metadata addresses are refused
(also when spelled as IPv4-mapped IPv6, 6to4, NAT64 or legacy IPv4 forms such as 2130706433,
0177.0.0.1 or 0x7f.1) unless an operator allow-lists the host or a network containing the
address."""

import functools
import ipaddress
import re
import socket

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
    return None


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


def allows_host(host: str, allowed_hosts: tuple[str, ...]) -> bool:
    """Whether the operator exempted this host by name (every address it resolves to)."""
    names = {entry.lower().rstrip(".") for entry in allowed_hosts}
    return host.lower().rstrip(".") in names


@functools.lru_cache(maxsize=16)
def _networks(allowed_hosts: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    networks: list[IPNetwork] = []
    for entry in allowed_hosts:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            continue  # a host name
    return tuple(networks)


def check_address(host: str, address: IPAddress, allowed_hosts: tuple[str, ...]) -> None:
    """Refuse a blocked address of `host` unless an allow-listed network contains it."""
    reason = blocked_reason(address)
    if reason and not any(address in net for net in _networks(allowed_hosts)):
        raise UrlRefused(Code.PERMISSION_DENIED, f"address {address} of host {host} is {reason}")


def check_source(text: str, allowed_hosts: tuple[str, ...]) -> None:
    """Everything about a create's `uri` that is known before DNS: scheme, credentials, and an
    address spelled in the host. What the host resolves to, and where redirects lead, only the
    worker can know."""
    url = parse(text)
    check_url(url)
    if url.scheme not in HTTP_SCHEMES:
        return
    host = url.raw_host or ""
    address = literal_address(host)
    if address is not None and not allows_host(host, allowed_hosts):
        check_address(host, address, allowed_hosts)
