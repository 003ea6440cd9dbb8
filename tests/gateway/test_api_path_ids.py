"""Ids in request paths: every route checks its path id against that id's rule
(contracts/ids.py) before anything is looked up by it, and answers 400 INVALID_ARGUMENT naming
the path parameter. A `%2F` in a path segment decodes to '/': through it an image route could
address a folder's bindings and operations (stored under `folder/<folderId>`)."""

from typing import Any

from tests.gateway.conftest import FOLDER, MISSING_IMAGE, MISSING_OPERATION, Api, Reply

FOLDERS = "/resource-manager/v1/folders"
VIEWER = {"roleId": "viewer", "subject": {"id": "u1", "type": "userAccount"}}
SET = {"accessBindings": [VIEWER]}
ADD = {"accessBindingDeltas": [{"action": "ADD", "accessBinding": VIEWER}]}
EDIT = {"updateMask": "description", "description": "changed"}

# (verb, path with `{}` for the id, body, the path parameter's name)
IMAGE_ROUTES: list[tuple[str, str, Any, str]] = [
    ("GET", "/compute/v1/images/{}", None, "imageId"),
    ("PATCH", "/compute/v1/images/{}", EDIT, "imageId"),
    ("DELETE", "/compute/v1/images/{}", None, "imageId"),
    ("GET", "/compute/v1/images/{}/operations", None, "imageId"),
    ("GET", "/compute/v1/images/{}:listAccessBindings", None, "resourceId"),
    ("POST", "/compute/v1/images/{}:setAccessBindings", SET, "resourceId"),
    ("POST", "/compute/v1/images/{}:updateAccessBindings", ADD, "resourceId"),
]
OPERATION_ROUTES: list[tuple[str, str, Any, str]] = [
    ("GET", "/operations/{}", None, "operationId"),
    ("GET", "/operations/{}:cancel", None, "operationId"),
    ("POST", "/operations/{}:cancel", None, "operationId"),
]
FOLDER_ROUTES: list[tuple[str, str, Any, str]] = [
    ("GET", FOLDERS + "/{}:listAccessBindings", None, "resourceId"),
    ("POST", FOLDERS + "/{}:setAccessBindings", SET, "resourceId"),
    ("POST", FOLDERS + "/{}:updateAccessBindings", ADD, "resourceId"),
]

SLASHED = ["folder%2Ffd", f"folder%2F{FOLDER}", "%2Fa", "a%2F", "..%2F..%2Fx"]
MALFORMED_IMAGE_IDS = [
    "img-missing",
    MISSING_IMAGE[:-1],  # 19 characters
    MISSING_IMAGE + "0",  # 21
    MISSING_IMAGE.upper(),
    MISSING_OPERATION,  # the other kind's prefix
    MISSING_IMAGE[:-1] + "%20",
    MISSING_IMAGE[:-1] + "%C3%A9",
    f"{MISSING_IMAGE}%2F",
]
MALFORMED_OPERATION_IDS = [
    "opr-missing",
    MISSING_OPERATION[:-1],
    MISSING_OPERATION + "0",
    MISSING_IMAGE,
    f"{MISSING_OPERATION}%2Fx",
]
MALFORMED_FOLDER_IDS = [f"{FOLDER}%2Fx", "f" * 51]


async def _call(api: Api, verb: str, template: str, path_id: str, body: Any) -> Reply:
    return await api.call(verb, template.format(path_id), json_body=body)


async def _assert_refused(
    api: Api, routes: list[tuple[str, str, Any, str]], ids: list[str]
) -> None:
    for verb, template, body, parameter in routes:
        for path_id in ids:
            reply = await _call(api, verb, template, path_id, body)
            case = (verb, template, path_id, reply.body)
            assert (reply.status, reply.code) == (400, 3), case
            assert reply.message.startswith(f"{parameter}: "), case


async def test_image_routes_refuse_malformed_ids(api: Api) -> None:
    await _assert_refused(api, IMAGE_ROUTES, SLASHED + MALFORMED_IMAGE_IDS)


async def test_operation_routes_refuse_malformed_ids(api: Api) -> None:
    await _assert_refused(api, OPERATION_ROUTES, SLASHED + MALFORMED_OPERATION_IDS)


async def test_folder_routes_refuse_malformed_ids(api: Api) -> None:
    await _assert_refused(api, FOLDER_ROUTES, SLASHED + MALFORMED_FOLDER_IDS)
    assert (await api.call("GET", f"{FOLDERS}/{'f' * 50}:listAccessBindings")).status == 200


async def test_well_formed_ids_that_name_nothing_are_404(api: Api) -> None:
    for routes, path_id in ((IMAGE_ROUTES, MISSING_IMAGE), (OPERATION_ROUTES, MISSING_OPERATION)):
        for verb, template, body, _ in routes:
            reply = await _call(api, verb, template, path_id, body)
            assert (reply.status, reply.code) == (404, 5), (verb, template, reply.body)


async def test_an_image_route_cannot_reach_a_folders_bindings(api: Api) -> None:
    folder_change = await api.call("POST", f"{FOLDERS}/{FOLDER}:setAccessBindings", json_body=SET)
    assert folder_change.status == 200, folder_change.body
    disguised = f"folder%2F{FOLDER}"

    operations = await api.operations(disguised)
    bindings = await api.list_bindings(disguised)
    emptied = await api.set_bindings(disguised, {"accessBindings": []})

    for reply in (operations, bindings, emptied):
        assert (reply.status, reply.code) == (400, 3), reply.body
    listed = await api.call("GET", f"{FOLDERS}/{FOLDER}:listAccessBindings")
    assert listed.json == {"accessBindings": [VIEWER]}
