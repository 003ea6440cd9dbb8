"""Every KilnClient method against a live `kiln dev`."""

import asyncio
import time

import pytest
from msgspec.structs import asdict

from contracts.access import (
    AccessBinding,
    AccessBindingDelta,
    AccessBindingsOperationResult,
    Subject,
)
from contracts.enums import AccessBindingAction, ImageStatus
from contracts.errors import Code
from contracts.images import CreateImageRequest, Image, UpdateImageRequest
from contracts.operations import CreateImageMetadata, Empty, Operation
from kiln.client import KilnClient, KilnError
from tests.client.conftest import Stall

EVERYONE = AccessBinding(
    role_id="compute.images.user", subject=Subject(id="allAuthenticatedUsers", type="system")
)
BOB = AccessBinding(role_id="viewer", subject=Subject(id="bob", type="userAccount"))


async def make_images(client: KilnClient, folder: str, url: str, *names: str) -> list[Image]:
    images: list[Image] = []
    for name in names:
        operation = await client.create_image(
            folder_id=folder, name=name, family="fam-" + name[:1], uri=url
        )
        image = await client.wait(operation, timeout=20)
        assert isinstance(image, Image)
        images.append(image)
    return images


async def test_create_and_wait_returns_the_ready_image(
    client: KilnClient, folder: str, image_url: str
) -> None:
    labels = {"os": "linux"}
    request = CreateImageRequest(folder_id=folder, name="disk", labels=labels, uri=image_url)
    operation = await client.create_image(request)
    assert isinstance(operation.metadata, CreateImageMetadata)
    image = await client.wait(operation, timeout=20)
    assert isinstance(image, Image)
    assert image.id == operation.metadata.image_id
    assert (image.status, image.size, image.labels) == (ImageStatus.READY, "16777216", labels)
    assert asdict(await client.get_image(image.id)) == asdict(image)
    done = await client.get_operation(operation.id)
    assert done.done and done.error is None


async def test_list_pages_filter_and_order(client: KilnClient, folder: str, image_url: str) -> None:
    made = await make_images(client, folder, image_url, "c", "a", "b")
    page = await client.list_images(folder, page_size=2, order_by="name")
    assert [i.name for i in page.images] == ["a", "b"] and page.next_page_token
    rest = await client.list_images(
        folder, page_size=2, order_by="name", page_token=page.next_page_token
    )
    assert [i.name for i in rest.images] == ["c"] and not rest.next_page_token
    every = [i.name async for i in client.iter_images(folder, page_size=1, order_by="name desc")]
    assert every == ["c", "b", "a"]
    chosen = await client.list_images(folder, filter='name IN ("a", "c")', order_by="name")
    assert [i.id for i in chosen.images] == [made[1].id, made[0].id]


async def test_latest_by_family(client: KilnClient, folder: str, image_url: str) -> None:
    await make_images(client, folder, image_url, "u1", "u2", "x1")
    latest = await client.latest_by_family(folder, "fam-u")
    assert latest.name == "u2"
    with pytest.raises(KilnError) as caught:
        await client.latest_by_family(folder, "fam-none")
    assert caught.value.code == Code.NOT_FOUND


async def test_update_by_fields_and_by_request(
    client: KilnClient, folder: str, image_url: str
) -> None:
    [image] = await make_images(client, folder, image_url, "upd")
    operation = await client.update_image(image.id, description="first", labels={"a": "b"})
    updated = await client.wait(operation)
    assert isinstance(updated, Image)
    assert (updated.name, updated.description, updated.labels) == ("upd", "first", {"a": "b"})
    request = UpdateImageRequest(image_id=image.id, update_mask="labels")
    cleared = await client.wait(await client.update_image(request))
    assert isinstance(cleared, Image)
    assert (cleared.description, cleared.labels) == ("first", {})
    renamed = await client.wait(await client.update_image(image.id, ["name"], name="renamed"))
    assert isinstance(renamed, Image) and renamed.name == "renamed"


async def test_delete_and_list_operations(client: KilnClient, folder: str, image_url: str) -> None:
    [image] = await make_images(client, folder, image_url, "gone")
    await client.wait(await client.update_image(image.id, description="x"))
    operations = await client.list_operations(image.id)
    assert [op.description for op in operations.operations] == ["Update image", "Create image"]
    first = await client.list_operations(image.id, page_size=1)
    second = await client.list_operations(image.id, page_token=first.next_page_token)
    assert [op.id for op in first.operations + second.operations] == [
        op.id for op in operations.operations
    ]
    assert isinstance(await client.wait(await client.delete_image(image.id), timeout=20), Empty)
    with pytest.raises(KilnError) as caught:
        await client.get_image(image.id)
    assert caught.value.code == Code.NOT_FOUND


async def test_access_bindings(client: KilnClient, folder: str, image_url: str) -> None:
    [image] = await make_images(client, folder, image_url, "shared")
    result = await client.wait(await client.set_access_bindings(image.id, [EVERYONE, BOB]))
    assert isinstance(result, AccessBindingsOperationResult)
    assert len(result.effective_deltas) == 2
    listed = await client.list_access_bindings(image.id)
    assert set(listed.access_bindings) == {EVERYONE, BOB}
    first = await client.list_access_bindings(image.id, page_size=1)
    assert len(first.access_bindings) == 1 and first.next_page_token
    remove = AccessBindingDelta(action=AccessBindingAction.REMOVE, access_binding=BOB)
    await client.wait(await client.update_access_bindings(image.id, [remove]))
    assert [b async for b in client.iter_access_bindings(image.id)] == [EVERYONE]
    await client.wait(await client.set_access_bindings(image.id, []))
    assert (await client.list_access_bindings(image.id)).access_bindings == []


async def test_cancel_a_running_create(client: KilnClient, folder: str, image_server: str) -> None:
    operation = await client.create_image(
        folder_id=folder, name="slow", uri=f"{image_server}/slow/disk.qcow2"
    )
    with pytest.raises(KilnError) as timed_out:
        await client.wait(operation, timeout=0.3)
    assert (timed_out.value.code, timed_out.value.http_status) == (Code.DEADLINE_EXCEEDED, 0)
    cancelled = await client.cancel_operation(operation.id)
    assert cancelled.id == operation.id
    with pytest.raises(KilnError) as caught:
        await client.wait(operation.id, timeout=20)
    assert (caught.value.code, caught.value.http_status) == (Code.CANCELLED, 499)
    assert (await client.list_images(folder)).images == []


# Both deployments renew leases every 10 s (the default): only the cancel notice stops an import
# within this.
STOPPED_WITHIN = 1.0


async def _stalled_create(client: KilnClient, folder: str, url: str, stall: Stall) -> Operation:
    """A create whose import is streaming from the stalled source."""
    operation = await client.create_image(folder_id=folder, name="stalled", uri=url)
    assert await asyncio.to_thread(stall.streaming.wait, 20)
    return operation


async def _stopped_within(
    client: KilnClient, create: Operation, stall: Stall, since: float
) -> None:
    """The import's connection closed and its create CANCELLED, both within STOPPED_WITHIN."""
    assert await asyncio.to_thread(stall.closed.wait, since + STOPPED_WITHIN - time.monotonic())
    assert stall.closed_at - since < STOPPED_WITHIN
    with pytest.raises(KilnError) as caught:
        await client.wait(create, timeout=since + STOPPED_WITHIN - time.monotonic())
    assert caught.value.code == Code.CANCELLED


async def test_a_cancel_stops_a_running_import_within_a_second(
    client: KilnClient, folder: str, stall: tuple[str, Stall]
) -> None:
    create = await _stalled_create(client, folder, *stall)

    cancelled_at = time.monotonic()
    await client.cancel_operation(create.id)

    await _stopped_within(client, create, stall[1], cancelled_at)
    assert (await client.list_images(folder)).images == []


async def test_a_delete_stops_a_running_import_within_a_second(
    client: KilnClient, folder: str, stall: tuple[str, Stall]
) -> None:
    create = await _stalled_create(client, folder, *stall)
    assert isinstance(create.metadata, CreateImageMetadata)

    deleted_at = time.monotonic()
    await client.wait(await client.delete_image(create.metadata.image_id), timeout=STOPPED_WITHIN)

    await _stopped_within(client, create, stall[1], deleted_at)


async def test_wait_raises_the_operation_error(
    client: KilnClient, folder: str, image_server: str
) -> None:
    operation = await client.create_image(
        folder_id=folder, name="missing", uri=f"{image_server}/missing.qcow2"
    )
    with pytest.raises(KilnError) as caught:
        await client.wait(operation, timeout=20)
    assert caught.value.code == Code.NOT_FOUND
    assert "404" in caught.value.message
    done = await client.wait_done(operation)
    assert done.done and done.error is not None and done.error.code == Code.NOT_FOUND
