"""Blocked addresses in every spelling, DNS pinning, the allow-list, bad URLs and file:// below
the import root. A refused address is never connected to: the conftest guard fails any test
that tries to leave the loopback range."""

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
import pytest

from contracts.errors import Code
from runtime import urls
from worker.errors import ImportRefused, SourceUnavailable
from worker.importing.addresses import PinnedResolver
from worker.importing.fetch import FetchPolicy, open_source

MiB = 1 << 20
Fetch = Callable[[str, FetchPolicy], Awaitable[bytes]]
Refusal = Callable[[str, FetchPolicy], Awaitable[ImportRefused]]


@pytest.mark.parametrize(
    ("host", "address", "reason"),
    [
        ("127.0.0.1", "127.0.0.1", "loopback"),
        ("2130706433", "127.0.0.1", "loopback"),
        ("0177.0.0.1", "127.0.0.1", "loopback"),
        ("0x7f.0.0.1", "127.0.0.1", "loopback"),
        ("127.1", "127.0.0.1", "loopback"),
        ("[::1]", "::1", "loopback"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1", "loopback"),
        ("[2002:7f00:1::]", "2002:7f00:1::", "loopback"),
        ("[64:ff9b::7f00:1]", "64:ff9b::7f00:1", "loopback"),
        ("10.0.0.5", "10.0.0.5", "private"),
        ("192.168.1.1", "192.168.1.1", "private"),
        ("[fc00::1]", "fc00::1", "private"),
        ("169.254.10.1", "169.254.10.1", "link-local"),
        ("[fe80::1]", "fe80::1", "link-local"),
        ("224.0.0.1", "224.0.0.1", "multicast"),
        ("0.0.0.0", "0.0.0.0", "unspecified"),
        ("240.0.0.1", "240.0.0.1", "reserved"),
        ("100.64.0.1", "100.64.0.1", "not globally routable"),
        ("169.254.169.254", "169.254.169.254", "a cloud metadata address"),
        ("[fd00:ec2::254]", "fd00:ec2::254", "a cloud metadata address"),
    ],
)
async def test_a_blocked_address_is_refused_without_connecting(
    source, host: str, address: str, reason: str, refusal: Refusal
) -> None:
    bare = FetchPolicy(max_bytes=MiB, retries=0)

    error = await refusal(f"http://{host}:{source.port}/img/zero.raw", bare)

    assert error.code == Code.PERMISSION_DENIED
    assert error.message.startswith(f"address {address} of host ")
    assert error.message.endswith(f" is {reason}")
    assert sum(source.hits.values()) == 0


async def test_localhost_is_refused_by_its_address(source, refusal: Refusal) -> None:
    error = await refusal(
        source.url("/img/zero.raw").replace("127.0.0.1", "localhost"), FetchPolicy(max_bytes=MiB)
    )

    assert error.code == Code.PERMISSION_DENIED
    assert error.message.startswith("address ")
    assert error.message.endswith(" of host localhost is loopback")
    assert sum(source.hits.values()) == 0


async def test_a_host_resolving_to_a_private_address_is_refused(
    monkeypatch: pytest.MonkeyPatch, refusal: Refusal
) -> None:
    await fake_dns(monkeypatch, {"files.example.internal": ["10.0.0.5"]})

    error = await refusal("http://files.example.internal/disk.raw", FetchPolicy(max_bytes=MiB))

    assert error.message == "address 10.0.0.5 of host files.example.internal is private"


async def test_one_private_address_among_public_ones_is_enough_to_refuse(
    monkeypatch: pytest.MonkeyPatch, refusal: Refusal
) -> None:
    await fake_dns(monkeypatch, {"mixed.example": ["93.184.216.34", "192.168.0.7"]})

    error = await refusal("http://mixed.example/disk.raw", FetchPolicy(max_bytes=MiB))

    assert error.message == "address 192.168.0.7 of host mixed.example is private"


async def test_the_vetted_address_is_pinned_for_the_connection(
    monkeypatch: pytest.MonkeyPatch, source, policy: FetchPolicy, images: Path, fetch: Fetch
) -> None:
    # A rebinding resolver: vetted as loopback (allow-listed), then private.
    answers = [["127.0.0.1"], ["10.0.0.5"]]
    lookups = await fake_dns(monkeypatch, {"rebind.example": answers})

    body = await fetch(f"http://rebind.example:{source.port}/img/data.qcow2", policy)

    assert body == (images / "data.qcow2").read_bytes()
    assert lookups == ["rebind.example"]


async def test_the_resolver_keeps_the_hosts_vetted_last(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PinnedResolver, "MAX_PINS", 3)
    resolver = PinnedResolver()
    for host in ("a.example", "b.example", "c.example"):
        resolver.pin(host, ["192.0.2.1"])
    resolver.pin("a.example", ["192.0.2.2"])  # vetted again: now the newest

    resolver.pin("d.example", ["192.0.2.4"])

    with pytest.raises(OSError, match=r"b\.example was not vetted"):
        await resolver.resolve("b.example", 80)
    for host, address in (("a.example", "192.0.2.2"), ("c.example", "192.0.2.1")):
        assert [r["host"] for r in await resolver.resolve(host, 80)] == [address]
    assert [r["host"] for r in await resolver.resolve("d.example", 80)] == ["192.0.2.4"]


async def test_an_allow_listed_host_name_is_exempt(
    monkeypatch: pytest.MonkeyPatch, source, images: Path, fetch: Fetch
) -> None:
    await fake_dns(monkeypatch, {"mirror.internal": ["127.0.0.1"]})
    policy = FetchPolicy(max_bytes=64 * MiB, allowed_hosts=("MIRROR.internal",))

    body = await fetch(f"http://mirror.internal:{source.port}/img/zero.raw", policy)

    assert len(body) == (images / "zero.raw").stat().st_size


async def test_an_allow_listed_cidr_is_exempt(source, fetch: Fetch) -> None:
    policy = FetchPolicy(max_bytes=64 * MiB, allowed_hosts=("127.0.0.0/8",))

    body = await fetch(f"http://0x7f.0.0.1:{source.port}/img/zero.raw", policy)

    assert len(body) == 8 * MiB


async def test_an_allow_listed_address_and_port_is_exempt_on_that_port_only(
    source, closed_port: int, fetch: Fetch, refusal: Refusal
) -> None:
    policy = FetchPolicy(max_bytes=64 * MiB, allowed_hosts=(f"127.0.0.1:{source.port}",))

    body = await fetch(source.url("/img/zero.raw"), policy)
    error = await refusal(f"http://127.0.0.1:{closed_port}/img/zero.raw", policy)

    assert len(body) == 8 * MiB
    assert (error.code, error.message) == (
        Code.PERMISSION_DENIED,
        "address 127.0.0.1 of host 127.0.0.1 is loopback",
    )


async def test_an_allow_listed_host_and_port_is_exempt_on_that_port_only(
    monkeypatch: pytest.MonkeyPatch, source, closed_port: int, fetch: Fetch, refusal: Refusal
) -> None:
    await fake_dns(monkeypatch, {"mirror.internal": ["127.0.0.1"]})
    policy = FetchPolicy(max_bytes=64 * MiB, allowed_hosts=(f"mirror.internal:{source.port}",))

    body = await fetch(f"http://mirror.internal:{source.port}/img/zero.raw", policy)
    error = await refusal(f"http://mirror.internal:{closed_port}/img/zero.raw", policy)

    assert len(body) == 8 * MiB
    assert error.message == "address 127.0.0.1 of host mirror.internal is loopback"


async def test_an_allow_listed_ipv6_address_and_port_is_exempt_on_that_port_only(
    closed_port: int, refusal: Refusal
) -> None:
    policy = FetchPolicy(max_bytes=MiB, retries=0, allowed_hosts=(f"[::1]:{closed_port}",))

    error = await refusal(f"http://[::1]:{closed_port + 1}/disk", policy)
    with pytest.raises(SourceUnavailable, match=r"cannot fetch http://\[::1\]:"):
        await fetch_one(f"http://[::1]:{closed_port}/disk", policy)  # exempt: it connects

    assert error.message == "address ::1 of host ::1 is loopback"


@pytest.mark.parametrize(
    ("url", "code", "message"),
    [
        (
            "ftp://example.com/disk",
            Code.FAILED_PRECONDITION,
            "URL scheme 'ftp' is not supported (use http, https, file)",
        ),
        (
            "gopher://example.com/",
            Code.FAILED_PRECONDITION,
            "URL scheme 'gopher' is not supported (use http, https, file)",
        ),
        (
            "http://1.2.3.4.5/disk",
            Code.INVALID_ARGUMENT,
            "host '1.2.3.4.5' is not a valid address",
        ),
        ("http://[::1/disk", Code.INVALID_ARGUMENT, "URL is malformed: Invalid IPv6 URL"),
        (
            f"http://{'.'.join(['a' * 63] * 4)}/disk",
            Code.INVALID_ARGUMENT,
            "host is longer than 253 characters",
        ),
        (
            "http://user:pw@example.com/disk",
            Code.INVALID_ARGUMENT,
            "URL must not carry user credentials",
        ),
        ("http://example.com:0/disk", Code.INVALID_ARGUMENT, "URL port 0 is not valid"),
        (
            "http://files..example.com/disk",
            Code.INVALID_ARGUMENT,
            "host 'files..example.com' is malformed: each label between its dots must be 1 to"
            " 63 characters",
        ),
        (
            f"http://{'a' * 64}.example.com/disk",
            Code.INVALID_ARGUMENT,
            f"host '{'a' * 64}.example.com' is malformed: each label between its dots must be"
            " 1 to 63 characters",
        ),
        (
            "http://16909060/disk",
            Code.INVALID_ARGUMENT,
            "host '16909060' is not a dotted-quad IPv4 address (write 1.2.3.4)",
        ),
        (
            "disk.raw",
            Code.FAILED_PRECONDITION,
            "URL scheme '(none)' is not supported (use http, https, file)",
        ),
    ],
)
async def test_a_bad_url_is_refused(url: str, code: Code, message: str, refusal: Refusal) -> None:
    error = await refusal(url, FetchPolicy(max_bytes=MiB))

    assert (error.code, error.message) == (code, message)


# Spellings of a host that resolves to (or is) 127.0.0.1, allow-listed below, and whether the
# worker's HTTP client can fetch from it: the gateway must accept exactly those it can.
HOST_SPELLINGS = [
    ("files.example", True),
    ("FILES.example", True),
    ("files.example.", True),
    ("under_score.example", True),
    ("bücher.example", True),
    (f"{'a' * 63}.example", True),
    ("127.0.0.1", True),
    ("0x7f.0.0.1", True),
    ("2130706433", False),
    ("127.1", False),
    ("0177.0.0.1", False),
    ("files..example", False),
    (".files.example", False),
    (f"{'a' * 64}.example", False),
]


@pytest.mark.parametrize(("host", "fetchable"), HOST_SPELLINGS)
async def test_the_gateway_accepts_exactly_the_hosts_the_worker_can_fetch(
    monkeypatch: pytest.MonkeyPatch, source, host: str, fetchable: bool
) -> None:
    await fake_dns(monkeypatch, {})  # every name is 127.0.0.1, as the C library would encode it
    policy = FetchPolicy(max_bytes=MiB, retries=0, allowed_hosts=("127.0.0.0/8",))
    url = f"http://{host}:{source.port}/img/odd.raw"

    try:
        urls.check_source(url, policy.allowed_hosts)
        accepted = True
    except urls.UrlRefused:
        accepted = False
    try:
        fetched = len(await fetch_one(url, policy)) == 1000
    except ImportRefused:
        fetched = False

    assert accepted == fetched == fetchable


async def fetch_one(url: str, policy: FetchPolicy) -> bytes:
    async with open_source(url, policy) as chunks:
        return b"".join([chunk async for chunk in chunks])


async def fake_dns(
    monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str] | list[list[str]]]
) -> list[str]:
    """Answer getaddrinfo from `answers` (a list of lists answers one per call; 127.0.0.1 for
    a host not in it); no real DNS. Host names are encoded as socket.getaddrinfo does."""
    lookups: list[str] = []

    async def getaddrinfo(host: str, port: int, **_: object) -> list[tuple]:
        host.encode("idna")  # what the C library is given: raises for an empty or long label
        lookups.append(host)
        answer = answers.get(host, ["127.0.0.1"])
        addresses = answer.pop(0) if isinstance(answer[0], list) else answer
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
    return lookups


# --- file:// ---------------------------------------------------------------------------------


async def test_a_file_below_the_import_root_is_read(
    policy: FetchPolicy, images: Path, fetch: Fetch
) -> None:
    body = await fetch(f"file://{images / 'data.qcow2'}", policy)

    assert body == (images / "data.qcow2").read_bytes()


async def test_a_file_outside_the_import_root_is_refused(
    policy: FetchPolicy, tmp_path: Path, refusal: Refusal
) -> None:
    (tmp_path / "secret.raw").write_bytes(bytes(512))

    error = await refusal(f"file://{tmp_path / 'secret.raw'}", policy)

    assert error.code == Code.PERMISSION_DENIED
    assert error.message == f"path {tmp_path / 'secret.raw'} is outside the import root"


async def test_dot_dot_out_of_the_import_root_is_refused(
    policy: FetchPolicy, images: Path, refusal: Refusal
) -> None:
    error = await refusal(f"file://{images}/../../etc/passwd", policy)

    assert error.code == Code.PERMISSION_DENIED
    assert "'..'" in error.message


async def test_a_symlink_out_of_the_import_root_is_refused(
    policy: FetchPolicy, tmp_path: Path, refusal: Refusal
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.raw").write_bytes(bytes(512))
    os.symlink(tmp_path / "secret.raw", root / "link.raw")

    error = await refusal(
        f"file://{root / 'link.raw'}", msgspec.structs.replace(policy, import_root=root)
    )

    assert error.code == Code.PERMISSION_DENIED
    assert error.message.endswith("is outside the import root")


async def test_a_missing_file_is_not_found(
    policy: FetchPolicy, images: Path, refusal: Refusal
) -> None:
    error = await refusal(f"file://{images / 'nope.raw'}", policy)

    assert error.code == Code.NOT_FOUND


async def test_file_urls_are_refused_without_an_import_root(images: Path, refusal: Refusal) -> None:
    error = await refusal(f"file://{images / 'zero.raw'}", FetchPolicy(max_bytes=64 * MiB))

    assert error.code == Code.FAILED_PRECONDITION
