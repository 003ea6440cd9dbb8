"""An open event stream keeps checking its caller: it ends with a `kiln.error` when the token
reaches its `exp` or the caller may no longer list the folder, and delivers nothing committed
after the right went; one caller holds at most `max_streams_per_subject` streams at once."""

import asyncio
import json
import time
from typing import Any

import jwt
import pytest

from api.settings import GatewaySettings
from contracts.errors import Code
from gateway.events import sse_caller, sse_stream
from kiln.client_events import Frame
from support.auth import gateway_settings, token

from .conftest import Gateway, Sse, sse

BOB = "bob-streams"
STREAMS = 2


@pytest.fixture
def settings() -> GatewaySettings:
    return gateway_settings(max_streams_per_subject=STREAMS)


def bearer_of(bearer_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {bearer_token}"}


async def change_viewer(gateway: Gateway, folder: str, action: str, subject: str = BOB) -> None:
    """Add or remove `subject`'s compute.viewer role on the folder, through the API."""
    binding = {"roleId": "compute.viewer", "subject": {"id": subject, "type": "userAccount"}}
    body = {"accessBindingDeltas": [{"action": action, "accessBinding": binding}]}
    path = f"{gateway.url}/resource-manager/v1/folders/{folder}:updateAccessBindings"
    async with gateway.session.post(path, json=body) as reply:
        assert reply.status == 200, await reply.text()


async def until_error(stream: Sse, timeout: float) -> tuple[list[Frame], dict[str, Any]]:
    """The frames before the stream's `kiln.error`, and its error object; the stream ends."""
    frames = []
    while (frame := await stream.next(timeout)).type != sse_stream.ERROR_EVENT:
        frames.append(frame)
    assert await stream.ended()
    assert frame.data is not None
    error = dict(json.loads(frame.data))
    assert set(error) == {"code", "message", "details"}
    return frames, error


async def test_a_stream_ends_when_its_token_expires(
    gateway: Gateway, folder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sse_stream, "POLL_SECONDS", 30.0)  # neither a poll nor an event
    short = token(ttl=2)
    expires_at = jwt.decode(short, options={"verify_signature": False})["exp"]
    async with sse(gateway.session, gateway.url, bearer_of(short), folderId=folder) as stream:
        assert (await stream.next()).position == 0
        await gateway.create(folder)
        assert (await stream.event()).type == "compute.image.created"
        frames, error = await until_error(stream, timeout=5)
        ended_at = time.time()
    assert frames == []
    assert error["code"] == Code.UNAUTHENTICATED and "expired" in error["message"]
    assert expires_at <= ended_at <= expires_at + 1


async def test_a_token_past_its_exp_opens_no_stream(gateway: Gateway, folder: str) -> None:
    """Single calls get a leeway for clock skew past `exp`; a stream does not."""
    url = f"{gateway.url}/kiln/v1/events"
    headers = bearer_of(token(ttl=-5))
    async with gateway.session.get(url, params={"folderId": folder}, headers=headers) as reply:
        assert reply.status == 401
        body = await reply.json()
    assert body["code"] == Code.UNAUTHENTICATED and "expired" in body["message"]


async def test_an_idle_stream_ends_within_the_recheck_once_its_right_is_removed(
    gateway: Gateway, folder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sse_caller, "RECHECK_SECONDS", 1.0)
    monkeypatch.setattr(sse_stream, "POLL_SECONDS", 30.0)  # only the re-check ends it
    await change_viewer(gateway, folder, "ADD")
    async with sse(gateway.session, gateway.url, bearer_of(token(BOB)), folderId=folder) as s:
        assert (await s.next()).position == 0
        await change_viewer(gateway, folder, "REMOVE")  # no event: folder bindings have none
        removed_at = time.monotonic()
        frames, error = await until_error(s, timeout=5)
        ended_in = time.monotonic() - removed_at
    assert frames == []
    assert error["code"] == Code.PERMISSION_DENIED and folder in error["message"]
    assert ended_in <= sse_caller.RECHECK_SECONDS + 0.5


async def test_no_event_committed_after_the_right_is_removed_is_delivered(
    gateway: Gateway, folder: str
) -> None:
    await change_viewer(gateway, folder, "ADD")
    async with sse(gateway.session, gateway.url, bearer_of(token(BOB)), folderId=folder) as s:
        assert (await s.next()).position == 0
        await gateway.create(folder)
        assert (await s.event()).position == 1
        await change_viewer(gateway, folder, "REMOVE")
        removed_at = time.monotonic()
        for _ in range(3):
            await gateway.create(folder)
        frames, error = await until_error(s, timeout=sse_caller.RECHECK_SECONDS + 2)
        ended_in = time.monotonic() - removed_at
    assert frames == []
    assert error["code"] == Code.PERMISSION_DENIED
    assert ended_in < sse_caller.RECHECK_SECONDS  # at the first batch, not the re-check
    async with sse(gateway.session, gateway.url, folderId=folder, lastEventId="1") as admins:
        kept = [(await admins.event()).position for _ in range(3)]
    assert kept == [2, 3, 4]  # what bob was not sent


async def open_status(gateway: Gateway, folder: str, subject: str) -> tuple[int, Any]:
    url, headers = f"{gateway.url}/kiln/v1/events", bearer_of(token(subject))
    async with gateway.session.get(url, params={"folderId": folder}, headers=headers) as reply:
        if reply.content_type == "application/json":
            return reply.status, await reply.json()
        return reply.status, None


async def test_one_caller_holds_at_most_the_limit_of_streams(gateway: Gateway, folder: str) -> None:
    await change_viewer(gateway, folder, "ADD")
    bob = bearer_of(token(BOB))
    async with (
        sse(gateway.session, gateway.url, bob, folderId=folder) as first,
        sse(gateway.session, gateway.url, bob, folderId=folder) as second,
    ):
        assert [(await s.next()).position for s in (first, second)] == [0, 0]
        status, body = await open_status(gateway, folder, BOB)
        assert status == 429
        assert set(body) == {"code", "message", "details"}
        assert body["code"] == Code.RESOURCE_EXHAUSTED and str(STREAMS) in body["message"]
        async with sse(gateway.session, gateway.url, folderId=folder) as admins:
            assert (await admins.next()).position == 0  # another caller: its own slots
    async with asyncio.timeout(5):  # the gateway sees the closed streams at its next poll
        while (await open_status(gateway, folder, BOB))[0] != 200:
            await asyncio.sleep(0.05)
