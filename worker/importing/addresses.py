"""Resolving an image source's host, vetting every address it has (the rules are
runtime/urls.py, shared with the gateway), and a resolver that pins the vetted addresses."""

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Iterator

from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from contracts.errors import Code
from runtime import urls
from runtime.urls import IPAddress, UrlRefused
from worker.errors import ImportRefused, SourceUnavailable


@contextlib.contextmanager
def refusing() -> Iterator[None]:
    """A refused URL as the import pipeline's permanent error."""
    try:
        yield
    except UrlRefused as exc:
        raise ImportRefused(exc.code, exc.message) from None


async def vet(url: URL, allowed_hosts: tuple[str, ...]) -> list[str]:
    """Resolve the host of `url` and return its addresses, refusing any blocked one."""
    host, port = url.raw_host or "", url.port or 0
    addresses = await _resolve(host, port)
    with refusing():
        if not urls.allows_host(host, port, allowed_hosts):
            for address in addresses:
                urls.check_address(host, address, port, allowed_hosts)
        urls.check_spelling(host)
    return [str(a) for a in addresses]


async def _resolve(host: str, port: int) -> list[IPAddress]:
    with refusing():
        literal = urls.literal_address(host)
    if literal is not None:
        return [literal]
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


class PinnedResolver(AbstractResolver):
    """Answers only with the addresses vetted for a host, so DNS cannot change after the check.

    It keeps the `MAX_PINS` hosts vetted last, so that a worker importing from ever new hosts
    does not grow without end. A pin is needed from its vetting to the connection made right
    after it; a worker has far fewer fetches between those two than `MAX_PINS`."""

    MAX_PINS = 1024

    def __init__(self) -> None:
        self._pins: dict[str, list[str]] = {}  # oldest vetting first

    def pin(self, host: str, addresses: list[str]) -> None:
        self._pins.pop(host, None)
        self._pins[host] = addresses
        if len(self._pins) > self.MAX_PINS:
            del self._pins[next(iter(self._pins))]

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self._pins:
            raise OSError(f"host {host} was not vetted")
        return [_result(host, address, port) for address in self._pins[host]]

    async def close(self) -> None:
        self._pins.clear()


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
