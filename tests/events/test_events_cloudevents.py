"""Every event type Kiln emits, read as the CloudEvents SDK reads it: from a queue bound to
`kiln.events` (the SDK's RabbitMQ binding) and from `GET /kiln/v1/events` (its JSON format,
and the 1.x `from_json` too), on real `kiln gateway` and `kiln worker` processes over RabbitMQ
and PostgreSQL. Each event's `data` parses, with the official SDK's protobuf classes, as the
type the README's Events table documents."""

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

# Importing these registers every message an Operation's Any may carry.
import google.protobuf.empty_pb2
import google.rpc.error_details_pb2  # noqa: F401
import pytest
import yandex.cloud.compute.v1.image_service_pb2  # noqa: F401
from cloudevents.core.bindings.rabbitmq import RabbitMQMessage, from_rabbitmq_event
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from cloudevents.v1.http import from_json
from google.protobuf import any_pb2, json_format
from yandex.cloud.access import access_pb2
from yandex.cloud.compute.v1 import image_pb2
from yandex.cloud.operation import operation_pb2

from contracts.access import AccessBinding, AccessBindingDelta, Subject
from contracts.enums import AccessBindingAction
from contracts.events import EVENT_SOURCE
from contracts.operations import CreateImageMetadata
from kiln.client import KilnClient
from support import auth
from support.amqp_tap import EventTap, Tapped
from support.kiln_processes import Deployment, KilnProcess, deployed, wait_until

from .conftest import sse

# The status of the Image each image event carries (README "Events").
IMAGE_STATUS = {
    "compute.image.created": "CREATING",
    "compute.image.import_started": "CREATING",
    "compute.image.ready": "READY",
    "compute.image.failed": "ERROR",
    "compute.image.updated": "READY",
    "compute.image.deleting": "DELETING",
    "compute.image.deleted": "DELETING",
}
BINDINGS_CHANGED = "compute.image.access_bindings_changed"
OPERATION_DONE = "compute.operation.done"
EVERY_TYPE = {*IMAGE_STATUS, BINDINGS_CHANGED, OPERATION_DONE}
ATTRIBUTES = {
    *("specversion", "id", "source", "type", "datacontenttype", "subject", "time"),
    *("sequence", "correlationid", "folderid", "data"),
}
PUBLIC = AccessBindingDelta(
    action=AccessBindingAction.ADD,
    access_binding=AccessBinding(
        role_id="compute.images.user",
        subject=Subject(id="allAuthenticatedUsers", type="system"),
    ),
)


@pytest.fixture
async def deployment(
    tmp_path: Path, postgres_url: str, rabbit_url: str
) -> AsyncIterator[Deployment]:
    async with deployed(tmp_path, database_url=postgres_url, broker_url=rabbit_url) as kiln:
        yield kiln


@pytest.fixture
async def kiln_gateway(deployment: Deployment) -> KilnProcess:
    """A gateway, and a worker importing for it."""
    gateway = await deployment.gateway()
    await deployment.worker()
    return gateway


@pytest.fixture
async def tap(kiln_gateway: KilnProcess, rabbit_url: str) -> AsyncIterator[EventTap]:
    """Bound once the gateway has declared `kiln.events`, before any traffic."""
    events = EventTap(rabbit_url)
    await events.start()
    yield events
    await events.close()


async def live_a_life(client: KilnClient, folder: str, url: str, missing_url: str) -> None:
    """An image imported, updated, shared and deleted; another whose import fails."""
    created = await client.wait_done(await client.create_image(folder_id=folder, uri=url), 30)
    assert created.error is None and isinstance(created.metadata, CreateImageMetadata)
    image_id = created.metadata.image_id
    failed = await client.create_image(folder_id=folder, uri=missing_url)
    assert (await client.wait_done(failed, 30)).error is not None
    for started in (
        await client.update_image(image_id, description="shared"),
        await client.update_access_bindings(image_id, [PUBLIC]),
        await client.delete_image(image_id),
    ):
        assert (await client.wait_done(started, 30)).error is None


def from_amqp(tapped: Tapped) -> tuple[CloudEvent, bytes]:
    headers = {k: v for k, v in tapped.headers.items() if isinstance(v, str)}
    message = RabbitMQMessage(headers, tapped.content_type, tapped.body)
    return from_rabbitmq_event(message), tapped.body


def from_sse(body: bytes) -> tuple[CloudEvent, bytes]:
    event = JSONFormat().read(CloudEvent, body)
    assert isinstance(event, CloudEvent)
    return event, body


async def streamed(url: str, folder: str, count: int) -> list[bytes]:
    """The `data:` of the folder's first `count` SSE events, replayed from its start."""
    async with (
        aiohttp.ClientSession(headers=auth.bearer()) as session,
        sse(session, url, {"Last-Event-ID": "0"}, folderId=folder) as stream,
    ):
        frames = [await stream.event(timeout=10) for _ in range(count)]
    return [frame.data for frame in frames if frame.data is not None]


def check_attributes(event: CloudEvent, body: bytes, folder: str) -> None:
    assert set(json.loads(body)) == ATTRIBUTES, body
    assert (event.get_specversion(), event.get_source()) == ("1.0", EVENT_SOURCE)
    assert event.get_datacontenttype() == "application/json"
    assert event.get_id() == f"{event.get_subject()}-{event.get_extension('sequence')}"
    assert event.get_extension("correlationid").startswith("opr")
    assert event.get_extension("folderid") == folder
    legacy = from_json(body)  # the SDK's 1.x API
    assert (legacy["id"], legacy["specversion"]) == (event.get_id(), "1.0")


def check_data(event: CloudEvent) -> None:
    """`data` as documented: the Image, the effective deltas, the Operation."""
    kind, text = event.get_type(), json.dumps(event.get_data())
    if kind == OPERATION_DONE:
        operation = json_format.Parse(text, operation_pb2.Operation())
        assert (operation.id, operation.done) == (event.get_extension("correlationid"), True)
    elif kind == BINDINGS_CHANGED:
        result = access_pb2.AccessBindingsOperationResult()
        assert json_format.Parse(text, any_pb2.Any()).Unpack(result)
        assert [d.access_binding.subject.id for d in result.effective_deltas] == [
            "allAuthenticatedUsers"
        ]
    else:
        image = json_format.Parse(text, image_pb2.Image())
        status = image_pb2.Image.Status.Name(image.status)
        assert (image.id, status) == (event.get_subject(), IMAGE_STATUS[kind])
        assert event.get_data()["os"] == {"type": "LINUX"}  # created without `os`


async def test_every_event_type_is_a_cloudevent_on_amqp_and_on_the_stream(
    deployment: Deployment,
    kiln_gateway: KilnProcess,
    tap: EventTap,
    image_server: str,
    folder: str,
) -> None:
    url, missing_url = f"{image_server}/disk.qcow2", f"{image_server}/missing.qcow2"
    async with KilnClient(kiln_gateway.url, auth.token()) as client:
        await live_a_life(client, folder, url, missing_url)
    await wait_until(deployment.outbox_drained, 10, "every event published")
    await tap.barrier()
    published = {tapped.message_id: tapped for tapped in tap.messages()}  # at least once
    bodies = await streamed(kiln_gateway.url, folder, len(published))

    from_broker = {
        event.get_id(): (event, body) for event, body in map(from_amqp, published.values())
    }
    from_stream = {event.get_id(): (event, body) for event, body in map(from_sse, bodies)}
    assert {event.get_type() for event, _ in from_broker.values()} == EVERY_TYPE
    assert from_stream.keys() == from_broker.keys()
    for event, body in [*from_broker.values(), *from_stream.values()]:
        check_attributes(event, body, folder)
        check_data(event)
