"""ImageService.ListAccessBindings, SetAccessBindings and UpdateAccessBindings."""

from typing import Any

import pytest

from api.settings import GatewaySettings
from support.auth import gateway_settings as auth_settings
from tests.gateway.conftest import MISSING_IMAGE, Api, Reply

ACCESS = "type.googleapis.com/yandex.cloud.access."


@pytest.fixture
def gateway_settings() -> GatewaySettings:
    return auth_settings(max_body_bytes=1024 * 1024)


def binding(role: str, subject: str, kind: str = "userAccount") -> dict[str, Any]:
    return {"roleId": role, "subject": {"id": subject, "type": kind}}


def delta(action: Any, role: str, subject: str, kind: str = "userAccount") -> dict[str, Any]:
    return {"action": action, "accessBinding": binding(role, subject, kind)}


def keys(bindings: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """Bindings as sorted (role, subject type, subject id), whatever their key order."""
    return sorted((b["roleId"], b["subject"]["type"], b["subject"]["id"]) for b in bindings)


def effective(reply: Reply, metadata: str, image_id: str) -> list[dict[str, Any]]:
    """The effectiveDeltas of a finished access-binding Operation."""
    assert reply.status == 200, reply.body
    op = reply.json
    assert op["done"] is True and "error" not in op
    assert op["metadata"] == {"@type": ACCESS + metadata, "resourceId": image_id}
    assert op["response"]["@type"] == ACCESS + "AccessBindingsOperationResult"
    assert set(op["response"]) <= {"@type", "effectiveDeltas"}
    return list(op["response"].get("effectiveDeltas", []))


async def bindings_of(api: Api, image_id: str) -> list[dict[str, Any]]:
    reply = await api.list_bindings(image_id)
    assert reply.status == 200, reply.body
    assert "nextPageToken" not in reply.json
    return list(reply.json.get("accessBindings", []))


async def test_a_new_image_has_no_bindings(api: Api) -> None:
    image_id = await api.new_image()

    reply = await api.list_bindings(image_id)

    assert reply.status == 200 and reply.json == {}


async def test_set_replaces_every_binding(api: Api) -> None:
    image_id = await api.new_image()
    first = [
        binding("viewer", "u1"),
        binding("editor", "u2"),
        binding("compute.images.user", "allAuthenticatedUsers", "system"),
    ]
    second = [binding("viewer", "u1"), binding("admin", "sa1", "serviceAccount")]

    added = effective(
        await api.set_bindings(image_id, {"accessBindings": first}),
        "SetAccessBindingsMetadata",
        image_id,
    )
    changed = effective(
        await api.set_bindings(image_id, {"accessBindings": second}),
        "SetAccessBindingsMetadata",
        image_id,
    )

    assert sorted(d["accessBinding"]["roleId"] for d in added) == sorted(b["roleId"] for b in first)
    assert all(d["action"] == "ADD" for d in added)
    # REMOVE deltas first, then ADD; the unchanged binding is in neither.
    assert [d["action"] for d in changed] == ["REMOVE", "REMOVE", "ADD"]
    assert {d["accessBinding"]["roleId"] for d in changed[:2]} == {"editor", "compute.images.user"}
    assert changed[2] == delta("ADD", "admin", "sa1", "serviceAccount")
    assert keys(await bindings_of(api, image_id)) == keys(second)


async def test_set_to_nothing_removes_everything(api: Api) -> None:
    image_id = await api.new_image()
    await api.set_bindings(image_id, {"accessBindings": [binding("viewer", "u1")]})

    removed = effective(await api.set_bindings(image_id, {}), "SetAccessBindingsMetadata", image_id)
    nothing = effective(
        await api.set_bindings(image_id, {"accessBindings": []}),
        "SetAccessBindingsMetadata",
        image_id,
    )

    assert removed == [delta("REMOVE", "viewer", "u1")]
    assert nothing == []
    assert await bindings_of(api, image_id) == []


async def test_set_with_a_repeated_binding_keeps_one(api: Api) -> None:
    image_id = await api.new_image()

    deltas = effective(
        await api.set_bindings(image_id, {"accessBindings": [binding("viewer", "u1")] * 2}),
        "SetAccessBindingsMetadata",
        image_id,
    )

    assert deltas == [delta("ADD", "viewer", "u1")]
    assert await bindings_of(api, image_id) == [binding("viewer", "u1")]


async def test_update_reports_only_real_changes(api: Api) -> None:
    image_id = await api.new_image()
    await api.set_bindings(image_id, {"accessBindings": [binding("viewer", "u1")]})

    reply = await api.update_bindings(
        image_id,
        {
            "accessBindingDeltas": [
                delta("ADD", "viewer", "u1"),  # already there
                delta("ADD", "editor", "u2"),
                delta("REMOVE", "admin", "u3"),  # not there
                delta("REMOVE", "viewer", "u1"),
                delta("ADD", "editor", "u2"),  # added just above
            ]
        },
    )

    assert effective(reply, "UpdateAccessBindingsMetadata", image_id) == [
        delta("ADD", "editor", "u2"),
        delta("REMOVE", "viewer", "u1"),
    ]
    assert await bindings_of(api, image_id) == [binding("editor", "u2")]


async def test_update_without_a_real_change_has_no_effective_deltas(api: Api) -> None:
    image_id = await api.new_image()

    reply = await api.update_bindings(
        image_id, {"accessBindingDeltas": [delta("REMOVE", "viewer", "u1")]}
    )

    assert effective(reply, "UpdateAccessBindingsMetadata", image_id) == []


async def test_actions_are_accepted_by_number(api: Api) -> None:
    image_id = await api.new_image()

    add = await api.update_bindings(image_id, {"accessBindingDeltas": [delta(1, "viewer", "u1")]})
    remove = await api.update_bindings(
        image_id, {"accessBindingDeltas": [delta(2, "viewer", "u1")]}
    )

    assert effective(add, "UpdateAccessBindingsMetadata", image_id)[0]["action"] == "ADD"
    assert effective(remove, "UpdateAccessBindingsMetadata", image_id)[0]["action"] == "REMOVE"


def _assert_invalid(reply: Reply, field: str, case: object) -> None:
    assert (reply.status, reply.code) == (400, 3), (case, reply.body)
    assert field in reply.message, (case, reply.message)


async def test_bad_bindings_are_refused(api: Api) -> None:
    image_id = await api.new_image()
    set_cases: list[tuple[Any, str]] = [
        ({"accessBindings": [binding("owner", "u1")]}, "roleId"),
        ({"accessBindings": [binding("", "u1")]}, "roleId"),
        ({"accessBindings": [binding("viewer", "u1", "robot")]}, "type"),
        ({"accessBindings": [binding("viewer", "")]}, "id"),
        ({"accessBindings": [binding("viewer", "u" * 101)]}, "id"),
        ({"accessBindings": [binding("r" * 65, "u1")]}, "roleId"),
        ({"accessBindings": [{"roleId": "viewer"}]}, "subject"),
        ({"accessBindings": [{**binding("viewer", "u1"), "extra": 1}]}, "extra"),
        ({"accessBindings": {"roleId": "viewer"}}, "accessBindings"),
        ({"resourceId": image_id, "accessBindings": []}, "resourceId"),
        ({"bindings": []}, "bindings"),
    ]
    update_cases: list[tuple[Any, str]] = [
        ({"accessBindingDeltas": []}, "accessBindingDeltas"),
        ({}, "accessBindingDeltas"),
        (
            {"accessBindingDeltas": [delta("ACCESS_BINDING_ACTION_UNSPECIFIED", "viewer", "u1")]},
            "action",
        ),
        ({"accessBindingDeltas": [delta(0, "viewer", "u1")]}, "action"),
        ({"accessBindingDeltas": [delta("GRANT", "viewer", "u1")]}, "action"),
        ({"accessBindingDeltas": [{"accessBinding": binding("viewer", "u1")}]}, "action"),
        ({"accessBindingDeltas": [{"action": "ADD"}]}, "accessBinding"),
        (
            {"accessBindingDeltas": [delta("ADD", "viewer", "u1"), delta("ADD", "boss", "u1")]},
            "roleId",
        ),
        ({"accessBindingDeltas": [delta("ADD", "viewer", "u1", "robot")]}, "type"),
    ]
    for body, field in set_cases:
        _assert_invalid(await api.set_bindings(image_id, body), field, body)
    for body, field in update_cases:
        _assert_invalid(await api.update_bindings(image_id, body), field, body)
    assert await bindings_of(api, image_id) == []


UNKNOWN_SYSTEM_SUBJECTS = ["allAuthenticatedUser", "allusers", "group:organization:o1:users"]


async def test_unknown_system_subjects_are_refused(api: Api) -> None:
    """Only allUsers and allAuthenticatedUsers mean anything: any other system subject would
    be stored and match nobody, so a typo would silently grant (or revoke) nothing."""
    image_id = await api.new_image()
    for path in (f"/compute/v1/images/{image_id}", "/resource-manager/v1/folders/folder-a"):
        for subject in UNKNOWN_SYSTEM_SUBJECTS:
            unknown = binding("viewer", subject, "system")
            grants = {"accessBindings": [binding("viewer", "u1"), unknown]}
            set_reply = await api.call("POST", f"{path}:setAccessBindings", json_body=grants)
            _assert_invalid(set_reply, "accessBindings[1].subject.id", subject)
            assert subject in set_reply.message
            for action in ("ADD", "REMOVE"):
                deltas = {"accessBindingDeltas": [{"action": action, "accessBinding": unknown}]}
                reply = await api.call("POST", f"{path}:updateAccessBindings", json_body=deltas)
                _assert_invalid(reply, "accessBindingDeltas[0].accessBinding.subject.id", subject)
        assert (await api.call("GET", f"{path}:listAccessBindings")).json == {}
    everyone = [binding("viewer", s, "system") for s in ("allUsers", "allAuthenticatedUsers")]
    accepted = await api.set_bindings(image_id, {"accessBindings": everyone})
    assert len(effective(accepted, "SetAccessBindingsMetadata", image_id)) == 2


async def test_more_than_1000_bindings_are_refused(api: Api) -> None:
    """1000 bindings need more than 64 KiB of JSON: this module's gateway takes 1 MiB."""
    image_id = await api.new_image()
    many = [binding("viewer", f"u{n}", "serviceAccount") for n in range(1001)]

    too_many_set = await api.set_bindings(image_id, {"accessBindings": many})
    too_many_update = await api.update_bindings(
        image_id, {"accessBindingDeltas": [{"action": "ADD", "accessBinding": b} for b in many]}
    )
    exactly = await api.set_bindings(image_id, {"accessBindings": many[:1000]})
    listed = await api.list_bindings(image_id, pageSize=1000)
    default = await api.list_bindings(image_id)

    _assert_invalid(too_many_set, "accessBindings", "1001 set")
    _assert_invalid(too_many_update, "accessBindingDeltas", "1001 update")
    assert len(effective(exactly, "SetAccessBindingsMetadata", image_id)) == 1000
    assert len(listed.json["accessBindings"]) == 1000 and "nextPageToken" not in listed.json
    assert len(default.json["accessBindings"]) == 100 and default.json["nextPageToken"]


async def test_list_pages_through_the_bindings(api: Api) -> None:
    image_id = await api.new_image()
    wanted = [binding(role, f"u{n}") for role in ("editor", "viewer") for n in range(3)]
    await api.set_bindings(image_id, {"accessBindings": wanted})

    seen, token, pages = [], "", 0
    while True:
        params: dict[str, Any] = {"pageSize": 2, **({"pageToken": token} if token else {})}
        reply = await api.list_bindings(image_id, **params)
        assert reply.status == 200, reply.body
        assert len(reply.json["accessBindings"]) <= 2
        seen += reply.json["accessBindings"]
        pages += 1
        token = reply.json.get("nextPageToken", "")
        if not token:
            break

    assert pages == 3
    assert keys(seen) == keys(wanted) and len(seen) == 6
    first = (await api.list_bindings(image_id, pageSize=2)).json["nextPageToken"]
    other = await api.new_image()
    for target, bad in ((other, first), (image_id, "garbage"), (image_id, first[:-2] + "xx")):
        reply = await api.list_bindings(target, pageSize=2, pageToken=bad)
        assert (reply.status, reply.code) == (400, 3), reply.body
    for size in (1001, -1):
        reply = await api.list_bindings(image_id, pageSize=size)
        assert (reply.status, reply.code) == (400, 3), reply.body


async def test_unknown_image_is_404_for_every_binding_method(api: Api) -> None:
    replies = [
        await api.list_bindings(MISSING_IMAGE),
        await api.set_bindings(MISSING_IMAGE, {"accessBindings": [binding("viewer", "u1")]}),
        await api.update_bindings(
            MISSING_IMAGE, {"accessBindingDeltas": [delta("ADD", "viewer", "u1")]}
        ),
    ]

    for reply in replies:
        assert (reply.status, reply.code) == (404, 5), reply.body


async def test_bindings_of_a_deleting_image_cannot_change(api: Api) -> None:
    image_id = await api.new_image()
    await api.delete(image_id)

    reply = await api.set_bindings(image_id, {"accessBindings": [binding("viewer", "u1")]})

    assert (reply.status, reply.code) == (400, 9), reply.body


async def test_binding_changes_are_listed_as_operations(api: Api) -> None:
    image_id = await api.new_image()

    op = (await api.set_bindings(image_id, {"accessBindings": [binding("viewer", "u1")]})).json

    assert (await api.operation(op["id"])).json == op
    listed = (await api.operations(image_id)).json["operations"]
    assert op["id"] in [o["id"] for o in listed]
