"""Which addresses an image source may be fetched from, and a resolver that pins them.

Loopback, private, link-local, multicast, reserved and cloud-metadata addresses are refused
(also when spelled as IPv4-mapped IPv6, 6to4, NAT64 or legacy IPv4 forms) unless an operator
allow-lists the host or a network containing the address."""

import asyncio
import ipaddress
import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from contracts.errors import Code
from worker.errors import ImportRefused, SourceUnavailable

_METADATA = frozenset(map(ipaddress.ip_address, ("169.254.169.254", "fd00:ec2::254")))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


async def vet(url: URL, allowed_hosts: tuple[str, ...]) -> list[str]:
    """Resolve the host of `url` and return its addresses, refusing any blocked one."""
    host = url.raw_host or ""
    addresses = await _resolve(host, url.port or 0)
    names = {entry.lower().rstrip(".") for entry in allowed_hosts}
    if host.lower().rstrip(".") in names:
        return [str(a) for a in addresses]
    networks = [ipaddress.ip_network(h, strict=False) for h in allowed_hosts if _is_net(h)]
    for address in addresses:
        reason = _blocked(address)
        if reason and not any(address in net for net in networks):
            raise ImportRefused(
                Code.PERMISSION_DENIED, f"address {address} of host {host} is {reason}"
            )
    return [str(a) for a in addresses]


async def _resolve(host: str, port: int) -> list[IPAddress]:
    literal = _literal(host)
    if literal is not None:
        return [literal]
    if host.replace(".", "").isdigit():
        # aiohttp would connect to such a host directly, bypassing the pinned resolver.
        raise ImportRefused(Code.INVALID_ARGUMENT, f"host {host!r} is not a valid address")
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_AGAIN:
            raise SourceUnavailable(f"cannot resolve host {host}: {exc.strerror}") from exc
        raise ImportRefused(Code.INVALID_ARGUMENT, f"host {host!r} does not resolve") from exc
    except (UnicodeError, ValueError) as exc:
        raise ImportRefused(Code.INVALID_ARGUMENT, f"host {host!r} is malformed") from exc
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))


def _literal(host: str) -> IPAddress | None:
    """The address a host spells, including legacy IPv4 forms (2130706433, 0177.0.0.1, 0x7f.1)
    that the C library would accept."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def _is_net(entry: str) -> bool:
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    return True


def _blocked(address: IPAddress) -> str | None:
    """Why `address` must not be fetched from, or None when it is a public address."""
    if address in _METADATA:
        return "a cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or _nat64(address)
        if embedded is not None:
            return _blocked(embedded)
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


class PinnedResolver(AbstractResolver):
    """Answers only with the addresses vetted for a host, so DNS cannot change after the check."""

    def __init__(self) -> None:
        self.pins: dict[str, list[str]] = {}

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.pins:
            raise OSError(f"host {host} was not vetted")
        return [_result(host, address, port) for address in self.pins[host]]

    async def close(self) -> None:
        self.pins.clear()


def _result(host: str, address: str, port: int) -> ResolveResult:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return ResolveResult(
        hostname=host,
        host=address,
        port=port,
        family=family,
        proto=0,
        flags=socket.AI_NUMERICHOST,
    )
