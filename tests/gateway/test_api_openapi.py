"""GET /openapi.json is a valid OpenAPI 3.1 document covering spec §2; /docs serves a page
that can load it; responses match the schemas the document publishes."""

import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import validate

from tests.gateway.conftest import MISSING_IMAGE, Api, FinishReady

# Spec §2: (verb, path with the JSON names of its path parameters). Cancel is also POST.
METHODS = [
    ("get", "/compute/v1/images/{imageId}"),
    ("get", "/compute/v1/images:latestByFamily"),
    ("get", "/compute/v1/images"),
    ("post", "/compute/v1/images"),
    ("patch", "/compute/v1/images/{imageId}"),
    ("delete", "/compute/v1/images/{imageId}"),
    ("get", "/compute/v1/images/{imageId}/operations"),
    ("get", "/compute/v1/images/{resourceId}:listAccessBindings"),
    ("post", "/compute/v1/images/{resourceId}:setAccessBindings"),
    ("post", "/compute/v1/images/{resourceId}:updateAccessBindings"),
    ("get", "/operations/{operationId}"),
    ("get", "/operations/{operationId}:cancel"),
    ("post", "/operations/{operationId}:cancel"),
    ("get", "/kiln/v1/events"),
]
QUERY = {
    ("get", "/kiln/v1/events"): {"folderId", "type", "lastEventId"},
    ("get", "/compute/v1/images:latestByFamily"): {"folderId", "family"},
    ("get", "/compute/v1/images"): {"folderId", "pageSize", "pageToken", "filter", "orderBy"},
    ("get", "/compute/v1/images/{imageId}/operations"): {"pageSize", "pageToken"},
    ("get", "/compute/v1/images/{resourceId}:listAccessBindings"): {"pageSize", "pageToken"},
}
VERBS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The document does not depend on the store: one backend is enough here."""
    return f"sqlite:///{tmp_path / 'kiln.db'}"


async def _document(api: Api) -> dict[str, Any]:
    reply = await api.call("GET", "/openapi.json")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    return dict(reply.json)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


async def test_openapi_is_a_valid_3_1_document(api: Api) -> None:
    document = await _document(api)

    validate(document)  # raises on any violation of the OpenAPI 3.1 schema
    assert document["openapi"].startswith("3.1")


async def test_openapi_covers_every_method_of_the_contract(api: Api) -> None:
    document = await _document(api)

    assert document["openapi"].startswith("3.1.") and document["info"]["title"]
    served = {
        (verb, path) for path, item in document["paths"].items() for verb in item if verb in VERBS
    }
    assert set(METHODS) <= served, set(METHODS) - served
    operation_ids = [
        item[verb]["operationId"]
        for path, item in document["paths"].items()
        for verb in item
        if verb in VERBS
    ]
    assert len(operation_ids) == len(set(operation_ids))
    for verb, path in METHODS:
        operation = document["paths"][path][verb]
        parameters = [p for p in operation.get("parameters", []) if "in" in p]  # not the $refs
        in_path = {p["name"] for p in parameters if p["in"] == "path"}
        assert in_path == set(re.findall(r"{(\w+)}", path)), (verb, path)
        assert all(p["required"] for p in parameters if p["in"] == "path")
        in_query = {p["name"] for p in parameters if p["in"] == "query"}
        assert in_query == QUERY.get((verb, path), set()), (verb, path, in_query)
        assert ("requestBody" in operation) == (
            verb in ("post", "patch") and ":cancel" not in path
        ), (verb, path)
        assert "200" in operation["responses"], (verb, path)
        assert operation["summary"] and operation["description"] and operation["tags"]


async def test_every_ref_resolves(api: Api) -> None:
    document = await _document(api)

    refs = _refs(document)

    assert refs
    for ref in refs:
        assert isinstance(_resolve(document, ref), dict), ref


async def test_int64_fields_are_strings_in_the_schemas(api: Api) -> None:
    schemas = (await _document(api))["components"]["schemas"]

    for field in ("size", "storageSize", "minDiskSize"):
        assert schemas["Image"]["properties"][field]["type"] == "string", field
    assert "status" in schemas["Image"]["properties"]


async def test_responses_match_the_published_schemas(api: Api, finish_ready: FinishReady) -> None:
    document = await _document(api)
    image_id = await api.new_image(name="schema", labels={"a": "b"}, os={"type": "LINUX"})
    await finish_ready(image_id)
    await api.update(image_id, {"updateMask": "name", "name": "schema2"})
    await api.set_bindings(
        image_id,
        {"accessBindings": [{"roleId": "viewer", "subject": {"id": "u1", "type": "userAccount"}}]},
    )
    samples = [
        ("get", "/compute/v1/images/{imageId}", await api.get(image_id)),
        ("get", "/compute/v1/images", await api.list()),
        ("get", "/compute/v1/images/{imageId}/operations", await api.operations(image_id)),
        (
            "get",
            "/compute/v1/images/{resourceId}:listAccessBindings",
            await api.list_bindings(image_id),
        ),
        ("delete", "/compute/v1/images/{imageId}", await api.delete(image_id)),
        ("get", "/compute/v1/images/{imageId}", await api.get(MISSING_IMAGE)),
        ("get", "/compute/v1/images/{imageId}", await api.get("img-malformed")),
    ]

    for verb, path, reply in samples:
        response = document["paths"][path][verb]["responses"][str(reply.status)]
        schema = {
            **response["content"]["application/json"]["schema"],
            "components": document["components"],
        }
        jsonschema.Draft202012Validator(schema).validate(reply.json)


async def test_the_docs_page_is_html(api: Api) -> None:
    for path in ("/docs", "/docs/"):
        reply = await api.call("GET", path)

        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/html")
        assert b"swagger-ui" in reply.body.lower()
    html = (await api.call("GET", "/docs")).body.decode()
    for asset in re.findall(r'(?:href|src)="(/[^"]+)"', html):
        assert (await api.call("GET", asset)).status == 200, asset


async def test_the_docs_page_loads_the_served_document(api: Api) -> None:
    html = (await api.call("GET", "/docs")).body.decode()
    spec_url = re.search(r'url:\s*"([^"]+)"', html)
    assert spec_url is not None

    reply = await api.call("GET", spec_url.group(1))

    assert reply.status == 200, (spec_url.group(1), reply.body)
    assert reply.json == await _document(api)
