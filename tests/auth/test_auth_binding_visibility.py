"""Who sees the subjects of a binding change: whoever may list the bindings changed (the image's,
or the folder's). Anyone else reads binding operations (getOperation, listOperations) without
their effective deltas, and gets only the `id:` block of the events that carry them on the
folder's event stream (`access_bindings_changed`, and the `compute.operation.done` of a binding
operation), so its positions still advance without a gap."""

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kiln.client_events import Frame, SseParser
from store import event_log
from store.db import Database
from tests.auth.conftest import Caller
from tests.auth.test_auth_folders import folder_call
from tests.auth.test_auth_roles import binding, grant_folder, grant_image
from tests.gateway.conftest import FOLDER

RESULT = {"@type": "type.googleapis.com/yandex.cloud.access.AccessBindingsOperationResult"}
CHANGED = "compute.image.access_bindings_changed"
DONE = "compute.operation.done"


@dataclass
class Changes:
    """Two images of FOLDER and one binding change of each and of the folder, granting roles
    to subjects named `secret-…` that appear nowhere else."""

    image: str
    other_image: str
    image_change: dict[str, Any]
    other_change: dict[str, Any]
    folder_change: dict[str, Any]


async def _change(api: Caller, image_id: str, subject: str) -> dict[str, Any]:
    deltas = [{"action": "ADD", "accessBinding": binding("viewer", subject)}]
    reply = await api.update_bindings(image_id, {"accessBindingDeltas": deltas})
    assert reply.status == 200 and reply.json["response"]["effectiveDeltas"] == deltas
    return dict(reply.json)


async def _changes(api: Caller) -> Changes:
    """Callers: `auditor` (compute.auditor on the folder: it may list images, not bindings),
    `image-auditor` (compute.auditor on the image), `viewer` (compute.viewer on the folder),
    `image-viewer` (viewer on the image, compute.auditor on the folder)."""
    image, other = await api.new_image(name="one"), await api.new_image(name="two")
    await grant_folder(
        api,
        FOLDER,
        binding("compute.auditor", "auditor"),
        binding("compute.viewer", "viewer"),
        binding("compute.auditor", "image-viewer"),
    )
    await grant_image(
        api, image, binding("compute.auditor", "image-auditor"), binding("viewer", "image-viewer")
    )
    image_change = await _change(api, image, "secret-of-one")
    other_change = await _change(api, other, "secret-of-two")
    folder_add = {"action": "ADD", "accessBinding": binding("viewer", "secret-of-folder")}
    folder_change = await folder_call(api, FOLDER, "update", {"accessBindingDeltas": [folder_add]})
    return Changes(image, other, image_change, other_change, dict(folder_change.json))


def _without_deltas(operation: dict[str, Any]) -> dict[str, Any]:
    return {**operation, "response": RESULT}


async def _operation(caller: Caller, operation: dict[str, Any]) -> dict[str, Any]:
    reply = await caller.operation(operation["id"])
    assert reply.status == 200, reply.body
    return dict(reply.json)


async def _listed(caller: Caller, image_id: str, operation: dict[str, Any]) -> dict[str, Any]:
    reply = await caller.operations(image_id)
    assert reply.status == 200, reply.body
    return next(op for op in reply.json["operations"] if op["id"] == operation["id"])


async def test_operations_show_deltas_only_to_who_may_list_the_bindings(
    api: Caller, caller: Callable[..., Caller]
) -> None:
    changes = await _changes(api)
    image_change, folder_change = changes.image_change, changes.folder_change
    auditor, image_auditor = caller("auditor"), caller("image-auditor")
    viewer, image_viewer = caller("viewer"), caller("image-viewer")

    for blind in (auditor, image_auditor):
        assert await _operation(blind, image_change) == _without_deltas(image_change)
        listed = await _listed(blind, changes.image, image_change)
        assert listed == _without_deltas(image_change)
    for blind in (auditor, image_viewer):
        assert await _operation(blind, folder_change) == _without_deltas(folder_change)
    for seeing in (viewer, image_viewer, api):
        assert await _operation(seeing, image_change) == image_change
        assert await _listed(seeing, changes.image, image_change) == image_change
    for seeing in (viewer, api):
        assert await _operation(seeing, folder_change) == folder_change
    assert "secret" not in b"".join(r.body for r in auditor.seen + image_auditor.seen).decode()


async def _stream(caller: Caller, db: Database) -> list[Frame]:
    """Every frame of the caller's stream of FOLDER from its first event to its last."""
    frames: list[Frame] = []
    params = {"folderId": FOLDER, "lastEventId": "0"}
    path = "/kiln/v1/events"
    async with caller.client.get(path, params=params, headers=caller.auth) as response:
        assert response.status == 200, await response.text()
        async with db.reading() as conn:
            last = await event_log.last_position(conn, FOLDER)
        parser = SseParser()
        while not frames or frames[-1].position != last:
            frames += parser.feed(await asyncio.wait_for(response.content.readany(), 5))
    return frames


def _events(frames: list[Frame]) -> list[tuple[str, str]]:
    """(type, image) of each event sent in full."""
    sent = [json.loads(f.data) for f in frames if f.data is not None]
    return [(event["type"], event["subject"]) for event in sent]


async def test_the_event_stream_withholds_deltas_from_who_may_not_list_them(
    api: Caller, caller: Callable[..., Caller], db: Database
) -> None:
    changes = await _changes(api)
    one, two = changes.image, changes.other_image
    created = [("compute.image.created", one), ("compute.image.created", two)]
    own_grants = [(CHANGED, one), (DONE, one)]  # image-auditor's and image-viewer's roles

    everything = _events(await _stream(caller("viewer"), db))
    auditor_frames = await _stream(caller("auditor"), db)
    partial = _events(await _stream(caller("image-viewer"), db))

    changed = [(CHANGED, one), (DONE, one), (CHANGED, two), (DONE, two)]
    assert everything == [*created, *own_grants, *changed]
    assert _events(auditor_frames) == created
    assert partial == [*created, *own_grants, (CHANGED, one), (DONE, one)]
    assert auditor_frames[-1] == Frame(len(everything), "", None)  # the position moves on
    assert not any(b"secret" in (f.data or b"") for f in auditor_frames)
