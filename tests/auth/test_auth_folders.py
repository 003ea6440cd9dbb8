"""Folder access bindings (`/resource-manager/v1/folders/{folderId}:…AccessBindings`): the image
methods' shapes and Operations; a folder grant covers every image of the folder, now and later;
lists show only what a caller may see; the newest usable image of a family; operations stay
readable to their creator and, once their image is gone, to the folder's viewers."""

from collections.abc import Callable
from typing import Any

from bus.memory import MemoryBus
from store import images
from store.db import Database
from tests.auth.conftest import Caller
from tests.auth.test_auth_roles import binding, grant_folder, grant_image, ready_image
from tests.gateway.conftest import FOLDER, OTHER_FOLDER, FinishReady, Reply

FOLDERS = "/resource-manager/v1/folders"
ACCESS = "type.googleapis.com/yandex.cloud.access."


async def folder_call(api: Caller, folder: str, verb: str, body: Any = None, **query: Any) -> Reply:
    method = "GET" if verb == "list" else "POST"
    path = f"{FOLDERS}/{folder}:{verb}AccessBindings"
    params = {k: str(v) for k, v in query.items()} or None
    return await api.call(method, path, json_body=body, params=params)


async def test_set_update_and_list_folder_bindings(api: Caller, bus: MemoryBus) -> None:
    published: list[bytes] = []

    async def collect(delivery: Any) -> None:
        published.append(delivery.body)

    await bus.subscribe("kiln.events", ["#"], collect)
    viewer, editor = binding("viewer", "ann"), binding("compute.editor", "ben")
    set_reply = await folder_call(api, FOLDER, "set", {"accessBindings": [viewer, editor]})
    operation = set_reply.json
    assert set_reply.status == 200 and operation["done"] is True
    assert operation["description"] == "Change folder access bindings"
    assert operation["metadata"] == {
        "@type": ACCESS + "SetAccessBindingsMetadata",
        "resourceId": FOLDER,
    }
    assert operation["response"] == {
        "@type": ACCESS + "AccessBindingsOperationResult",
        "effectiveDeltas": [
            {"action": "ADD", "accessBinding": editor},
            {"action": "ADD", "accessBinding": viewer},
        ],
    }
    assert (await api.operation(operation["id"])).json == operation

    remove = {"accessBindingDeltas": [{"action": "REMOVE", "accessBinding": editor}]}
    updated = (await folder_call(api, FOLDER, "update", remove)).json
    assert updated["metadata"]["@type"] == ACCESS + "UpdateAccessBindingsMetadata"
    assert updated["response"]["effectiveDeltas"] == remove["accessBindingDeltas"]
    assert (await folder_call(api, FOLDER, "list")).json == {"accessBindings": [viewer]}
    assert (await folder_call(api, OTHER_FOLDER, "list")).json == {}
    assert published == []  # events are about images; folder grants publish none


async def test_folder_binding_pages_and_validation(api: Caller) -> None:
    grants = [binding("viewer", f"user-{n}") for n in range(5)]
    await folder_call(api, FOLDER, "set", {"accessBindings": grants})
    seen, token = [], ""
    while True:
        page = (await folder_call(api, FOLDER, "list", pageSize=2, pageToken=token)).json
        seen += page["accessBindings"]
        if not (token := page.get("nextPageToken", "")):
            break
    assert seen == grants
    first = (await folder_call(api, FOLDER, "list", pageSize=2)).json["nextPageToken"]
    image_id = await api.new_image()
    for reply in [
        await folder_call(api, OTHER_FOLDER, "list", pageSize=2, pageToken=first),
        await api.list_bindings(image_id, pageSize=2, pageToken=first),
        await folder_call(api, FOLDER, "set", {"accessBindings": [binding("owner")]}),
        await folder_call(api, FOLDER, "set", {"accessBindings": [binding("viewer", "u", "x")]}),
        await folder_call(api, FOLDER, "update", {"accessBindingDeltas": []}),
        await folder_call(api, FOLDER, "set", {"accessBindings": [], "folderId": "f"}),
        await folder_call(api, "f" * 65, "list"),
    ]:
        assert (reply.status, reply.code) == (400, 3), reply.body
    assert (await folder_call(api, FOLDER, "list")).json == {"accessBindings": grants}


async def test_a_folder_grant_covers_every_image_of_the_folder(
    api: Caller, caller: Callable[..., Caller], finish_ready: FinishReady
) -> None:
    before = await ready_image(api, finish_ready, name="before")
    elsewhere = await ready_image(api, finish_ready, name="elsewhere", folderId=OTHER_FOLDER)
    await grant_folder(api, FOLDER, binding("viewer"))
    after = await ready_image(api, finish_ready, name="after")
    bob = caller("bob")

    assert (await bob.get(before.image_id)).status == 200
    assert (await bob.get(after.image_id)).status == 200
    assert (await bob.get(elsewhere.image_id)).status == 404
    await folder_call(api, FOLDER, "update", _remove(binding("viewer")))
    assert (await bob.get(after.image_id)).status == 404  # revoked at once


def _remove(grant: dict[str, Any]) -> dict[str, Any]:
    return {"accessBindingDeltas": [{"action": "REMOVE", "accessBinding": grant}]}


async def test_list_shows_only_what_the_caller_may_see(
    api: Caller, caller: Callable[..., Caller], finish_ready: FinishReady
) -> None:
    mine = {(await ready_image(api, finish_ready, name=n)).image_id for n in ("a", "b")}
    other = await ready_image(api, finish_ready, name="c", folderId=OTHER_FOLDER)
    await grant_folder(api, FOLDER, binding("compute.viewer"))
    await grant_image(api, other.image_id, binding("viewer"))  # an image grant: no listing
    bob = caller("bob")

    listed = await bob.list()
    assert {image["id"] for image in listed.json["images"]} == mine
    refused = await bob.list(folderId=OTHER_FOLDER)
    assert (refused.status, refused.code) == (403, 7), refused.body
    stranger = await caller("stranger").list()
    assert (stranger.status, stranger.code) == (403, 7)
    assert (await bob.get(other.image_id)).status == 200


async def test_latest_by_family_is_the_newest_image_the_caller_may_use(
    api: Caller, caller: Callable[..., Caller], finish_ready: FinishReady
) -> None:
    public = await ready_image(api, finish_ready, name="old", family="distro")
    newest = await ready_image(api, finish_ready, name="new", family="distro")
    everyone = binding("compute.images.user", "allAuthenticatedUsers", "system")
    await grant_image(api, public.image_id, everyone)

    anyone = await caller("anyone").latest(FOLDER, "distro")
    assert anyone.status == 200 and anyone.json["id"] == public.image_id
    assert (await api.latest(FOLDER, "distro")).json["id"] == newest.image_id
    unknown = await caller("anyone").latest(FOLDER, "no-such-family")
    assert (unknown.status, unknown.code) == (403, 7), unknown.body
    assert (await api.latest(FOLDER, "no-such-family")).status == 404


async def test_a_public_image_is_a_source_for_anyone_but_not_readable(
    api: Caller, caller: Callable[..., Caller], finish_ready: FinishReady
) -> None:
    public = await ready_image(api, finish_ready, name="public")
    everyone = binding("compute.images.user", "allAuthenticatedUsers", "system")
    await grant_image(api, public.image_id, everyone)
    await grant_folder(api, "carols", binding("editor", "carol"))
    carol = caller("carol")

    copy = await carol.create_raw({"folderId": "carols", "imageId": public.image_id})
    assert copy.status == 200, copy.body
    assert (await carol.get(public.image_id)).status == 403
    assert (await carol.delete(public.image_id)).status == 403
    private = await ready_image(api, finish_ready, name="private")
    hidden = await carol.create_raw({"folderId": "carols", "imageId": private.image_id})
    assert (hidden.status, hidden.code) == (404, 5), hidden.body


async def test_an_operation_stays_readable_to_its_creator_and_the_folder(
    api: Caller, caller: Callable[..., Caller], db: Database
) -> None:
    await grant_folder(api, FOLDER, binding("editor", "bob"), binding("viewer", "vic"))
    bob, vic, eve = caller("bob"), caller("vic"), caller("eve")
    created = (await bob.create()).json
    image_id = created["metadata"]["imageId"]
    deleted = (await bob.delete(image_id)).json
    await folder_call(api, FOLDER, "update", _remove(binding("editor", "bob")))

    assert (await bob.operation(created["id"])).status == 200  # its creator, role or not
    assert (await bob.get(image_id)).status == 404
    async with db.transaction() as conn:  # the worker released the bytes: the image is gone
        await images.delete_locked(conn, [image_id])
    for operation in (created["id"], deleted["id"]):
        assert (await vic.operation(operation)).status == 200
        assert (await eve.operation(operation)).status == 404
    listed = await vic.operations(image_id)
    assert [op["id"] for op in listed.json["operations"]] == [deleted["id"], created["id"]]
    assert (await eve.operations(image_id)).status == 404
