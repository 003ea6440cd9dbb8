"""Authorization, method by method and role by role: a role granted on the image or on its folder
(directly, or to allAuthenticatedUsers / allUsers) allows what spec §9 says and nothing more. No
role at all on an image: it answers exactly like a missing one (404). A role without the
permission: 403. Folder-scoped methods (list, create, the event stream, folder bindings) need a
grant on the folder: 403 without one."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from api.authorization import ROLE_PERMISSIONS, Permission
from tests.auth.conftest import Caller
from tests.gateway.conftest import FOLDER, FinishReady

FAMILY = "fam"
OWN_FOLDER = "bobs-folder"
FOLDERS = "/resource-manager/v1/folders"


def binding(role: str, subject: str = "bob", kind: str = "userAccount") -> dict[str, Any]:
    return {"roleId": role, "subject": {"id": subject, "type": kind}}


@dataclass
class World:
    image_id: str
    create_operation: str


async def grant_folder(api: Caller, folder: str, *bindings: dict[str, Any]) -> None:
    deltas = [{"action": "ADD", "accessBinding": b} for b in bindings]
    path = f"{FOLDERS}/{folder}:updateAccessBindings"
    reply = await api.call("POST", path, json_body={"accessBindingDeltas": deltas})
    assert reply.status == 200, reply.body


async def grant_image(api: Caller, image_id: str, *bindings: dict[str, Any]) -> None:
    deltas = [{"action": "ADD", "accessBinding": b} for b in bindings]
    reply = await api.update_bindings(image_id, {"accessBindingDeltas": deltas})
    assert reply.status == 200, reply.body


async def ready_image(api: Caller, finish_ready: FinishReady, **fields: Any) -> World:
    reply = await api.create(**fields)
    assert reply.status == 200, reply.body
    image_id = reply.json["metadata"]["imageId"]
    await finish_ready(image_id)
    return World(image_id, reply.json["id"])


async def events_status(caller: Caller, folder: str) -> int:
    """The status of opening the folder's event stream (closed at once: it never ends)."""
    async with caller.client.get(
        "/kiln/v1/events", params={"folderId": folder}, headers=caller.auth
    ) as response:
        return response.status


Probe = Callable[[Caller, World], Awaitable[int]]


def _keep(grant: dict[str, Any]) -> dict[str, Any]:
    """A binding list that keeps the caller's own grant and adds an unrelated one."""
    return {"accessBindings": [grant, binding("viewer", "someone-else")]}


def probes(grant: dict[str, Any]) -> dict[str, Probe]:
    """Each method on the world's image and folder, in an order that leaves the image to the
    end (delete is last); each answers its HTTP status."""

    async def status(reply: Awaitable[Any]) -> int:
        return int((await reply).status)

    add = {"accessBindingDeltas": [{"action": "ADD", "accessBinding": binding("viewer", "x")}]}
    return {
        "get": lambda c, w: status(c.get(w.image_id)),
        "listOperations": lambda c, w: status(c.operations(w.image_id)),
        "listAccessBindings": lambda c, w: status(c.list_bindings(w.image_id)),
        "getLatestByFamily": lambda c, w: status(c.latest(FOLDER, FAMILY)),
        "getOperation": lambda c, w: status(c.operation(w.create_operation)),
        "list": lambda c, w: status(c.list()),
        "events": lambda c, w: events_status(c, FOLDER),
        "folder.listAccessBindings": lambda c, w: status(
            c.call("GET", f"{FOLDERS}/{FOLDER}:listAccessBindings")
        ),
        "create": lambda c, w: status(c.create(name="")),
        "create from the image": lambda c, w: status(
            c.create_raw({"folderId": OWN_FOLDER, "imageId": w.image_id})
        ),
        "update": lambda c, w: status(
            c.update(w.image_id, {"updateMask": "description", "description": "changed"})
        ),
        "setAccessBindings": lambda c, w: status(c.set_bindings(w.image_id, _keep(grant))),
        "updateAccessBindings": lambda c, w: status(c.update_bindings(w.image_id, add)),
        "cancel": lambda c, w: status(c.cancel(w.create_operation, "POST")),
        "folder.setAccessBindings": lambda c, w: status(
            c.call("POST", f"{FOLDERS}/{FOLDER}:setAccessBindings", json_body=_keep(grant))
        ),
        "folder.updateAccessBindings": lambda c, w: status(
            c.call("POST", f"{FOLDERS}/{FOLDER}:updateAccessBindings", json_body=add)
        ),
        "delete": lambda c, w: status(c.delete(w.image_id)),
    }


READS = ("get", "listOperations", "listAccessBindings", "getLatestByFamily", "getOperation")
FOLDER_READS = ("list", "events", "folder.listAccessBindings")
EDITS = ("update", "delete")
ADMINS = ("setAccessBindings", "updateAccessBindings", "cancel")
FOLDER_ADMINS = ("folder.setAccessBindings", "folder.updateAccessBindings")


def expect(default: int, **allowed: tuple[str, ...]) -> dict[str, int]:
    """Every probe answers `default` but those named in `allowed`'s values (200)."""
    names = probes(binding("viewer")).keys()
    ok = {name for group in allowed.values() for name in group}
    return {name: 200 if name in ok else default for name in names}


NO_ROLE = {
    **expect(404),
    **dict.fromkeys(("getLatestByFamily", *FOLDER_READS, "create", *FOLDER_ADMINS), 403),
}
USE = expect(403, use=("getLatestByFamily", "create from the image"))
IMAGE_VIEWER = expect(403, read=(*READS, "create from the image"))
IMAGE_EDITOR = expect(403, read=(*READS, "create from the image"), edit=EDITS)
IMAGE_ADMIN = expect(403, read=(*READS, "create from the image"), edit=EDITS, admin=ADMINS)
FOLDER_VIEWER = expect(403, read=(*READS, *FOLDER_READS, "create from the image"))
FOLDER_EDITOR = expect(
    403, read=(*READS, *FOLDER_READS, "create from the image"), edit=(*EDITS, "create")
)
EVERYTHING = expect(200)

CASES: dict[str, tuple[str | None, dict[str, Any], dict[str, int]]] = {
    "no role": (None, binding("viewer", "not-bob"), NO_ROLE),
    "compute.images.user on the image": ("image", binding("compute.images.user"), USE),
    "compute.images.user on the folder": ("folder", binding("compute.images.user"), USE),
    "public image (allAuthenticatedUsers)": (
        "image",
        binding("compute.images.user", "allAuthenticatedUsers", "system"),
        USE,
    ),
    "viewer on the image": ("image", binding("viewer"), IMAGE_VIEWER),
    "compute.viewer on the image": ("image", binding("compute.viewer"), IMAGE_VIEWER),
    "viewer on the image for allUsers": (
        "image",
        binding("viewer", "allUsers", "system"),
        IMAGE_VIEWER,
    ),
    "editor on the image": ("image", binding("editor"), IMAGE_EDITOR),
    "compute.editor on the image": ("image", binding("compute.editor"), IMAGE_EDITOR),
    "admin on the image": ("image", binding("admin"), IMAGE_ADMIN),
    "compute.admin on the image": ("image", binding("compute.admin"), IMAGE_ADMIN),
    "viewer on the folder": ("folder", binding("viewer"), FOLDER_VIEWER),
    "compute.viewer on the folder": ("folder", binding("compute.viewer"), FOLDER_VIEWER),
    "editor on the folder": ("folder", binding("editor"), FOLDER_EDITOR),
    "admin on the folder": ("folder", binding("admin"), EVERYTHING),
    "compute.admin on the folder": ("folder", binding("compute.admin"), EVERYTHING),
    "the subject id under another type is still the caller": (
        "image",
        binding("viewer", "bob", "serviceAccount"),
        IMAGE_VIEWER,
    ),
    "a user account named allUsers is not everyone": (
        "image",
        binding("viewer", "allUsers", "userAccount"),
        NO_ROLE,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_each_method_answers_as_the_role_allows(
    api: Caller, caller: Callable[..., Caller], finish_ready: FinishReady, case: str
) -> None:
    scope, grant, expected = CASES[case]
    world = await ready_image(api, finish_ready, name="shared", family=FAMILY)
    await grant_folder(api, OWN_FOLDER, binding("editor"))  # somewhere bob may create
    if scope == "image":
        await grant_image(api, world.image_id, grant)
    elif scope == "folder":
        await grant_folder(api, FOLDER, grant)
    bob = caller("bob")

    answered = {name: await probe(bob, world) for name, probe in probes(grant).items()}

    assert answered == expected


async def test_a_hidden_image_answers_exactly_like_a_missing_one(
    api: Caller, caller: Callable[..., Caller], finish_ready: FinishReady
) -> None:
    world = await ready_image(api, finish_ready, name="secret")
    bob = caller("bob")
    missing_image, missing_operation = "img00000000000000000", "opr00000000000000000"
    for hidden, missing, (what, hidden_id, missing_id) in [
        (
            await bob.get(world.image_id),
            await bob.get(missing_image),
            ("image", world.image_id, missing_image),
        ),
        (
            await bob.delete(world.image_id),
            await bob.delete(missing_image),
            ("image", world.image_id, missing_image),
        ),
        (
            await bob.operation(world.create_operation),
            await bob.operation(missing_operation),
            ("operation", world.create_operation, missing_operation),
        ),
    ]:
        assert (hidden.status, hidden.code) == (missing.status, missing.code) == (404, 5)
        assert hidden.message == f"{what} {hidden_id} not found"
        assert missing.message == f"{what} {missing_id} not found"
    assert (await api.get(world.image_id)).json["status"] == "READY"


async def test_admins_from_the_settings_need_no_binding(
    api: Caller, finish_ready: FinishReady
) -> None:
    world = await ready_image(api, finish_ready, name="any", family=FAMILY, folderId="anywhere")
    assert (await api.list(folderId="anywhere")).status == 200
    assert (await api.get(world.image_id)).status == 200
    path = f"{FOLDERS}/anywhere:listAccessBindings"
    assert (await api.call("GET", path)).json == {}
    assert (await api.delete(world.image_id)).status == 200


def test_the_roles_include_each_other_as_spec_9_documents() -> None:
    held = ROLE_PERMISSIONS
    assert held["compute.viewer"] <= held["compute.editor"] <= held["compute.admin"]
    assert held["compute.viewer"] <= held["viewer"]
    assert held["viewer"] | held["compute.editor"] <= held["editor"]
    assert held["editor"] | held["compute.admin"] <= held["admin"]
    assert held["compute.images.user"] == {Permission.USE, Permission.LATEST}
    assert held["admin"] == set(Permission)
