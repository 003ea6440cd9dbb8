"""KilnError, idempotency keys and retries: against `kiln dev`, and through a fake front server
that fails on cue (before or after passing the request on) and records what it was sent."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, unused_port

from contracts.errors import Code
from kiln.client import Image, KilnClient, KilnError

FORWARDED = ("Idempotency-Key", "Content-Type", "Authorization")
MISSING_IMAGE, MISSING_OPERATION = "img" + "0" * 17, "opr" + "0" * 17  # well-formed, unknown
CONTRACT_400 = b'{"code":3,"message":"name: bad","details":[]}'


class Flaky:
    """Answers each scripted failure in turn, then forwards to kiln dev. A failure marked
    `after` forwards first and then loses the answer, as a dropped connection would."""

    def __init__(self, upstream: str, script: list[tuple[int, str, bytes]]) -> None:
        self.upstream = upstream
        self.script = list(script)
        self.seen: list[dict[str, str]] = []
        self.in_flight = self.most_in_flight = 0
        self.delay = 0.0
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(
            {
                "method": request.method,
                **{name: request.headers[name] for name in FORWARDED if name in request.headers},
            }
        )
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)  # holds requests open to observe concurrency
            return await self._answer(request)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        status, when, body = self.script.pop(0) if self.script else (0, "", b"")
        if when == "before":
            return web.Response(status=status, body=body, headers={"Retry-After": "0"})
        headers = {k: v for k, v in request.headers.items() if k in FORWARDED}
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method,
                self.upstream + request.path_qs,
                data=await request.read(),
                headers=headers,
            ) as response,
        ):
            answer = await response.read()
        if when == "after":
            return web.Response(status=status, body=body)
        return web.Response(status=response.status, body=answer, content_type="application/json")


@contextlib.asynccontextmanager
async def flaky(upstream: str, *script: tuple[int, str, bytes]) -> AsyncIterator[Flaky]:
    fake = Flaky(upstream, list(script))
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        fake.url = str(server.make_url(""))
        yield fake


def fast_client(url: str, **options: object) -> KilnClient:
    return KilnClient(url, backoff=0.01, max_backoff=0.05, **options)  # type: ignore[arg-type]


async def test_not_found_error_fields(client: KilnClient) -> None:
    with pytest.raises(KilnError) as caught:
        await client.get_image(MISSING_IMAGE)
    error = caught.value
    assert (error.code, error.code_name, error.http_status) == (Code.NOT_FOUND, "NOT_FOUND", 404)
    assert error.message == f"image {MISSING_IMAGE} not found"
    assert uuid.UUID(error.request_id)
    assert str(error) == f"NOT_FOUND: image {MISSING_IMAGE} not found"


async def test_invalid_argument_error_fields(client: KilnClient, folder: str) -> None:
    with pytest.raises(KilnError) as caught:
        await client.list_images(folder, order_by="size")
    error = caught.value
    assert (error.code, error.http_status) == (Code.INVALID_ARGUMENT, 400)
    assert error.message.startswith("orderBy:") and error.request_id
    with pytest.raises(KilnError) as bad_name:
        await client.create_image(folder_id=folder, name="Not Valid", uri="http://x/y")
    assert (bad_name.value.code, bad_name.value.http_status) == (Code.INVALID_ARGUMENT, 400)


async def test_same_key_same_operation(client: KilnClient, folder: str, image_url: str) -> None:
    first = await client.create_image(
        folder_id=folder, name="once", uri=image_url, idempotency_key="key-1"
    )
    again = await client.create_image(
        folder_id=folder, name="once", uri=image_url, idempotency_key="key-1"
    )
    assert again.id == first.id
    with pytest.raises(KilnError) as caught:
        await client.create_image(
            folder_id=folder, name="other", uri=image_url, idempotency_key="key-1"
        )
    assert (caught.value.code, caught.value.http_status) == (Code.ALREADY_EXISTS, 409)
    await client.wait(first, timeout=20)
    assert len((await client.list_images(folder)).images) == 1


async def test_retries_503_with_the_same_key(
    kiln_dev: str, admin_token: str, client: KilnClient, folder: str, image_url: str
) -> None:
    script = [(503, "before", b""), (503, "before", b"")]
    async with flaky(kiln_dev, *script) as fake, fast_client(fake.url, token=admin_token) as kiln:
        operation = await kiln.create_image(folder_id=folder, name="retried", uri=image_url)
    assert [s["method"] for s in fake.seen] == ["POST"] * 3
    keys = {s["Idempotency-Key"] for s in fake.seen}
    assert len(keys) == 1 and uuid.UUID(keys.pop()).version == 4
    assert (await client.get_operation(operation.id)).id == operation.id


async def test_lost_answer_retried_creates_one_image(
    kiln_dev: str, admin_token: str, client: KilnClient, folder: str, image_url: str
) -> None:
    """The server did the work but the answer was lost: the retry gets the same operation."""
    script = [(502, "after", b"<html>bad gateway</html>")]
    async with flaky(kiln_dev, *script) as fake, fast_client(fake.url, token=admin_token) as kiln:
        operation = await kiln.create_image(folder_id=folder, name="lost", uri=image_url)
    first, retry = fake.seen
    assert first["Idempotency-Key"] == retry["Idempotency-Key"]
    image = await client.wait(operation, timeout=20)
    assert isinstance(image, Image)
    assert [(i.id, i.name) for i in (await client.list_images(folder)).images] == [
        (image.id, "lost")
    ]


async def test_retries_429_and_non_json_5xx(
    kiln_dev: str, admin_token: str, client: KilnClient
) -> None:
    script = [(429, "before", b""), (500, "before", b"<html>oops</html>")]
    async with flaky(kiln_dev, *script) as fake, fast_client(fake.url, token=admin_token) as kiln:
        with pytest.raises(KilnError) as caught:
            await kiln.get_operation(MISSING_OPERATION)
    assert len(fake.seen) == 3
    assert (caught.value.code, caught.value.http_status) == (Code.NOT_FOUND, 404)


@pytest.mark.parametrize("status", [400, 404, 409, 501])
async def test_does_not_retry_client_errors(kiln_dev: str, status: int) -> None:
    script = [(status, "before", CONTRACT_400)]
    async with flaky(kiln_dev, *script) as fake, fast_client(fake.url) as kiln:
        with pytest.raises(KilnError) as caught:
            await kiln.delete_image("img1")
    assert len(fake.seen) == 1
    assert (caught.value.code, caught.value.http_status) == (Code.INVALID_ARGUMENT, status)


async def test_gives_up_after_the_retries(kiln_dev: str) -> None:
    script = [(503, "before", b"down")] * 5
    async with flaky(kiln_dev, *script) as fake, fast_client(fake.url, retries=2) as kiln:
        with pytest.raises(KilnError) as caught:
            await kiln.get_image("img1")
    assert len(fake.seen) == 3
    error = caught.value
    assert (error.code, error.http_status, error.message) == (
        Code.UNAVAILABLE,
        503,
        "HTTP 503: down",
    )


async def test_connection_refused_is_unavailable() -> None:
    async with fast_client(f"http://127.0.0.1:{unused_port()}", retries=1) as kiln:
        with pytest.raises(KilnError) as caught:
            await kiln.get_image("img1")
    assert (caught.value.code, caught.value.http_status) == (Code.UNAVAILABLE, 0)


async def test_bearer_token_and_bounded_concurrency(kiln_dev: str, admin_token: str) -> None:
    async with flaky(kiln_dev) as fake:
        fake.delay = 0.05
        async with fast_client(fake.url, token=admin_token, concurrency=3) as kiln:
            calls = [kiln.list_images(f"f{i}") for i in range(12)]
            pages = await asyncio.gather(*calls)
    assert all(page.images == [] for page in pages)
    assert {s.get("Authorization") for s in fake.seen} == {f"Bearer {admin_token}"}
    assert fake.most_in_flight == 3


async def test_decodes_into_contract_structs(client: KilnClient, folder: str) -> None:
    page = await client.list_images(folder)
    assert msgspec.json.encode(page) == b"{}"
