"""Granting an editing role (one that includes compute.editor) to everyone (a system subject)
takes an admin of the image's folder: an admin of the image alone is refused (403), or it
could let any caller delete the image. Lesser roles stay its to grant, and so does removing."""

from collections.abc import Callable
from typing import Any

import pytest

from api.binding_rules import EDITING_ROLES
from tests.auth.conftest import Caller
from tests.auth.test_auth_roles import binding, grant_folder, grant_image
from tests.gateway.conftest import FOLDER

EVERYONE = ("allUsers", "allAuthenticatedUsers")


def _add(grant: dict[str, Any]) -> dict[str, Any]:
    return {"accessBindingDeltas": [{"action": "ADD", "accessBinding": grant}]}


def _remove(grant: dict[str, Any]) -> dict[str, Any]:
    return {"accessBindingDeltas": [{"action": "REMOVE", "accessBinding": grant}]}


def test_the_editing_roles_are_those_that_include_compute_editor() -> None:
    assert {"compute.editor", "compute.admin", "editor", "admin"} == EDITING_ROLES


@pytest.mark.parametrize("role", sorted(EDITING_ROLES))
async def test_an_image_admin_may_not_let_everyone_edit(
    api: Caller, caller: Callable[..., Caller], role: str
) -> None:
    image_id = await api.new_image()
    await grant_image(api, image_id, binding("admin", "ian"))
    ian = caller("ian")
    for subject in EVERYONE:
        public = binding(role, subject, "system")
        updated = await ian.update_bindings(image_id, _add(public))
        replaced = await ian.set_bindings(
            image_id, {"accessBindings": [binding("admin", "ian"), public]}
        )
        for reply in (updated, replaced):
            assert (reply.status, reply.code) == (403, 7), reply.body
            assert f"{role} to system:{subject}" in reply.message
            assert f"folder {FOLDER}" in reply.message
    assert (await ian.list_bindings(image_id)).json == {"accessBindings": [binding("admin", "ian")]}
    assert (await caller("anyone").delete(image_id)).status == 404


async def test_an_image_admin_may_still_make_an_image_public(
    api: Caller, caller: Callable[..., Caller]
) -> None:
    image_id = await api.new_image()
    await grant_image(api, image_id, binding("admin", "ian"))
    ian = caller("ian")
    for role in ("compute.images.user", "compute.viewer", "viewer"):
        reply = await ian.update_bindings(image_id, _add(binding(role, "allUsers", "system")))
        assert reply.status == 200, reply.body
    editor = await ian.update_bindings(image_id, _add(binding("editor", "bob")))
    assert editor.status == 200, editor.body


async def test_a_folder_admin_may_let_everyone_edit(
    api: Caller, caller: Callable[..., Caller]
) -> None:
    image_id = await api.new_image()
    await grant_folder(api, FOLDER, binding("compute.admin", "fay"))
    await grant_image(api, image_id, binding("admin", "ian"))
    public = binding("editor", "allAuthenticatedUsers", "system")

    granted = await caller("fay").update_bindings(image_id, _add(public))
    anyone_edits = await caller("anyone").update(image_id, {"description": "x"})
    kept = await caller("ian").set_bindings(
        image_id, {"accessBindings": [binding("admin", "ian"), public]}
    )
    removed = await caller("ian").update_bindings(image_id, _remove(public))
    by_bootstrap_admin = await api.update_bindings(image_id, _add(public))

    for reply in (granted, anyone_edits, kept, removed, by_bootstrap_admin):
        assert reply.status == 200, reply.body
    assert kept.json["response"] == {"@type": granted.json["response"]["@type"]}  # no change
    assert removed.json["response"]["effectiveDeltas"] == _remove(public)["accessBindingDeltas"]
    assert (
        by_bootstrap_admin.json["response"]["effectiveDeltas"]
        == _add(public)["accessBindingDeltas"]
    )
