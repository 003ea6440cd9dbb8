"""The HTTP source: status codes, retries, body checks, caps, idle timeout and redirects."""

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
import pytest

from contracts.errors import Code
from worker.blobs import FileBlobStore
from worker.errors import ImportRefused, SourceUnavailable
from worker.importing.fetch import FetchPolicy
from worker.importing.pipeline import import_from_url

MiB = 1 << 20
Stored = Callable[[], list[Path]]
RawStart = Callable[..., Awaitable[str]]
Fetch = Callable[[str, FetchPolicy], Awaitable[bytes]]
Refusal = Callable[[str, FetchPolicy], Awaitable[ImportRefused]]


def head(length: int) -> bytes:
    return (
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
    ).encode()


# --- status codes and retries ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (404, Code.NOT_FOUND, "source answered 404 Not Found"),
        (410, Code.NOT_FOUND, "source answered 410 Gone"),
        (403, Code.PERMISSION_DENIED, "source answered 403 Forbidden"),
        (401, Code.PERMISSION_DENIED, "source answered 401 Unauthorized"),
    ],
)
async def test_a_permanent_status_fails_at_once(
    source, policy: FetchPolicy, status: int, code: Code, message: str, refusal: Refusal
) -> None:
    error = await refusal(source.url(f"/status/{status}"), policy)

    assert (error.code, error.message) == (code, message)
    assert source.hits[f"/status/{status}"] == 1


async def test_503_twice_then_200_succeeds_after_retries(
    source, policy: FetchPolicy, blobs: FileBlobStore, images: Path
) -> None:
    result = await import_from_url(source.url("/flaky/data.qcow2"), policy, blobs)

    assert result.stored_bytes == (images / "data.qcow2").stat().st_size
    assert source.hits["/flaky/data.qcow2"] == 3


async def test_a_source_that_keeps_failing_is_unavailable_after_the_retries(
    source, policy: FetchPolicy, fetch: Fetch
) -> None:
    with pytest.raises(SourceUnavailable, match=r"503 Service Unavailable \(attempts: 3\)"):
        await fetch(source.url("/status/503"), policy)

    assert source.hits["/status/503"] == policy.retries + 1


async def test_429_is_retried(source, policy: FetchPolicy, fetch: Fetch) -> None:
    with pytest.raises(SourceUnavailable):
        await fetch(source.url("/status/429"), policy)

    assert source.hits["/status/429"] == policy.retries + 1


async def test_a_refused_connection_is_unavailable_and_never_names_the_query(
    closed_port: int, policy: FetchPolicy, fetch: Fetch
) -> None:
    with pytest.raises(SourceUnavailable) as caught:
        await fetch(f"http://127.0.0.1:{closed_port}/x?sig=secret", policy)

    assert str(caught.value).startswith(f"cannot fetch http://127.0.0.1:{closed_port}/x: ")
    assert str(caught.value).endswith("(attempts: 3)")
    assert "secret" not in str(caught.value)


# --- malformed responses ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 4096\r\nContent-Length: 1024\r\n\r\n",
            "Duplicate Content-Length",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 4096\r\nTransfer-Encoding: chunked\r\n\r\n",
            "Transfer-Encoding can't be present with Content-Length",
        ),
        (b"HTTP/1.1 2x0 OK\r\n\r\n", "Bad status line"),
    ],
)
async def test_a_malformed_response_is_refused_after_one_request(
    raw_server: RawStart, policy: FetchPolicy, refusal: Refusal, response: bytes, reason: str
) -> None:
    requests = 0

    async def malformed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        requests += 1
        writer.write(response + bytes(4096))
        await writer.drain()

    error = await refusal(await raw_server(malformed), policy)

    assert (error.code, error.message) == (
        Code.INVALID_ARGUMENT,
        f"source sent a malformed response: {reason}",
    )
    assert requests == 1


# --- body ------------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "text/csv; charset=utf-8"])
async def test_a_source_served_as_text_is_refused(
    raw_server: RawStart, policy: FetchPolicy, refusal: Refusal, content_type: str
) -> None:
    async def text(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(head(512).replace(b"application/octet-stream", content_type.encode()))
        writer.write(bytes(512))
        await writer.drain()

    error = await refusal(await raw_server(text), policy)

    served = content_type.split(";")[0]
    assert (error.code, error.message) == (
        Code.INVALID_ARGUMENT,
        f"source served {served}, not a disk image",
    )


async def test_a_body_shorter_than_its_content_length_is_refused(
    raw_server: RawStart, policy: FetchPolicy, blobs: FileBlobStore, stored: Stored
) -> None:
    async def short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(head(MiB) + bytes(4096))
        await writer.drain()

    url = await raw_server(short)
    with pytest.raises(ImportRefused) as caught:
        await import_from_url(url, policy, blobs)

    assert caught.value.code == Code.INVALID_ARGUMENT
    assert caught.value.message == f"source body is shorter than its Content-Length of {MiB}"
    assert stored() == []


async def test_a_body_over_max_bytes_is_refused(
    source, policy: FetchPolicy, blobs: FileBlobStore, stored: Stored
) -> None:
    small = msgspec.structs.replace(policy, max_bytes=MiB)

    with pytest.raises(ImportRefused) as caught:
        await import_from_url(source.url("/img/zero.raw"), small, blobs)

    assert caught.value.code == Code.RESOURCE_EXHAUSTED
    assert caught.value.message == f"source is larger than the limit of {MiB} bytes"
    assert stored() == []


async def test_a_body_without_content_length_is_capped_while_streaming(
    raw_server: RawStart, policy: FetchPolicy, refusal: Refusal
) -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
        while not writer.is_closing():
            writer.write(bytes(256 * 1024))
            await writer.drain()

    url = await raw_server(endless)
    error = await refusal(url, msgspec.structs.replace(policy, max_bytes=2 * MiB))

    assert error.code == Code.RESOURCE_EXHAUSTED


async def test_a_stalled_source_hits_the_idle_timeout(
    raw_server: RawStart, policy: FetchPolicy, blobs: FileBlobStore, stored: Stored
) -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(head(MiB) + bytes(4096))
        await writer.drain()
        await reader.read()  # until the client gives up

    url = await raw_server(stall)
    impatient = msgspec.structs.replace(policy, idle_timeout=0.2)

    with pytest.raises(SourceUnavailable, match=r"source sent nothing for 0.2 s"):
        await import_from_url(url, impatient, blobs)
    assert stored() == []


# --- redirects -------------------------------------------------------------------------------


async def test_a_redirect_is_followed(
    source, policy: FetchPolicy, images: Path, fetch: Fetch
) -> None:
    body = await fetch(source.url("/redirect?to=/img/data.qcow2"), policy)

    assert body == (images / "data.qcow2").read_bytes()


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("http://10.0.0.5/disk", "address 10.0.0.5 of host 10.0.0.5 is private"),
        (
            "http://169.254.169.254/latest/meta-data/",
            "address 169.254.169.254 of host 169.254.169.254 is a cloud metadata address",
        ),
        ("http://[::1]:9/disk", "address ::1 of host ::1 is loopback"),
    ],
)
async def test_a_redirect_to_a_blocked_address_is_refused(
    source, policy: FetchPolicy, target: str, message: str, refusal: Refusal
) -> None:
    error = await refusal(source.url(f"/redirect?to={target}"), policy)

    assert (error.code, error.message) == (Code.PERMISSION_DENIED, message)


async def test_a_redirect_to_a_file_url_is_refused(
    source, policy: FetchPolicy, refusal: Refusal
) -> None:
    error = await refusal(source.url("/redirect?to=file:///etc/passwd"), policy)

    assert error.code == Code.FAILED_PRECONDITION


async def test_a_redirect_loop_is_refused(source, policy: FetchPolicy, refusal: Refusal) -> None:
    error = await refusal(source.url("/loop/a"), policy)

    assert error.code == Code.INVALID_ARGUMENT
    assert error.message == f"redirect loop at {source.url('/loop/a')}"


async def test_too_many_redirects_are_refused(
    source, policy: FetchPolicy, refusal: Refusal
) -> None:
    error = await refusal(source.url("/chain/0"), policy)

    assert error.message == "more than 5 redirects"
    assert source.hits["/chain/5"] == 1
    assert source.hits["/chain/6"] == 0
