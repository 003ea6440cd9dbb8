"""The ports a Kiln process listens on. Each is checked before anything else starts, so a port
in use stops start-up at once with one line naming its setting, not a traceback once the
database, the broker and the worker have come and gone. A worker whose side port was not set
and whose default, 9090, is taken (by another worker of the host) serves on a free port."""

import errno
import socket

import structlog
from aiohttp import web

from kiln.settings import SettingsError

log = structlog.get_logger(__name__)
DEFAULT_SIDE_PORT = 9090
SIDE_PATHS = "/metrics, /healthz, /readyz"


def _refusal(exc: OSError, host: str, port: int, setting: str) -> SettingsError:
    if exc.errno == errno.EADDRINUSE:
        return SettingsError(setting, f"{host}:{port} is already in use")
    if exc.errno == errno.EADDRNOTAVAIL:
        return SettingsError("http_host", f"{host} is not an address of this host")
    return SettingsError(setting, f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def check_free(host: str, port: int, setting: str) -> None:
    """SettingsError unless every address of `host` can listen on `port` (as aiohttp will:
    SO_REUSEADDR, IPv6 sockets IPv6 only)."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise SettingsError("http_host", f"cannot listen on {host!r}: {exc.strerror}") from None
    for family, kind, protocol, _, address in found:
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise _refusal(exc, host, port, setting) from None


async def listen(runner: web.AppRunner, host: str, port: int, setting: str) -> web.TCPSite:
    """`runner` served on `host:port`; a port taken since the check is the same SettingsError."""
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        raise _refusal(exc, host, port, setting) from None
    return site


async def listen_side(runner: web.AppRunner, host: str, port: int | None) -> web.TCPSite:
    """A worker's side port: `port` if set (strictly), else 9090, else a free port."""
    if port is not None:
        return await listen(runner, host, port, "worker_http_port")
    default = web.TCPSite(runner, host, DEFAULT_SIDE_PORT)
    try:
        await default.start()
        return default
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise _refusal(exc, host, DEFAULT_SIDE_PORT, "worker_http_port") from None
    site = await listen(runner, host, 0, "worker_http_port")
    url = f"http://{host}:{site.port}"
    log.warning(f"worker side port {DEFAULT_SIDE_PORT} in use", serving=SIDE_PATHS, url=url)
    return site
