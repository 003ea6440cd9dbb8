"""What the OpenAPI document tells a client beyond the shapes: portable patterns, a summary,
description and tag per operation, a description per field and parameter, the headers each
operation takes, the error body on every error status, the event stream, and links."""

import re
from typing import Any

import pytest

from contracts.openapi import document
from tests.support.openapi_patterns import document_patterns

DOCUMENT = document()
OPERATIONS = [
    (verb, path, operation)
    for path, item in DOCUMENT["paths"].items()
    for verb, operation in item.items()
]
SCHEMAS = DOCUMENT["components"]["schemas"]
WRITES = {
    "Image_Create", "Image_Update", "Image_Delete", "Image_SetAccessBindings",
    "Image_UpdateAccessBindings", "Folder_SetAccessBindings", "Folder_UpdateAccessBindings",
}  # fmt: skip
# What a pattern must not use to mean the same in ECMA-262 (JSON Schema's dialect) as in
# Python: lookaround, Python's own anchors, inline flags, escapes ECMA's unicode mode refuses.
NOT_PORTABLE = re.compile(r"\(\?[=!<]|\(\?[aiLmsux]|\\[AZz]|\\@")


def _parameters(operation: dict[str, Any]) -> list[dict[str, Any]]:
    """The operation's parameters, references resolved."""
    found = []
    for parameter in operation["parameters"]:
        if "$ref" in parameter:
            parameter = DOCUMENT["components"]["parameters"][parameter["$ref"].rpartition("/")[2]]
        found.append(parameter)
    return found


def test_every_pattern_is_anchored_and_portable() -> None:
    patterns = document_patterns(DOCUMENT)

    assert len(patterns) > 20
    for pattern in patterns:
        assert pattern.startswith("^") and pattern.endswith("$"), pattern
        assert not NOT_PORTABLE.search(pattern), pattern
        re.compile(pattern)


@pytest.mark.parametrize(("verb", "path", "operation"), OPERATIONS)
def test_every_operation_is_described_and_tagged(
    verb: str, path: str, operation: dict[str, Any]
) -> None:
    tags = {tag["name"] for tag in DOCUMENT["tags"]}

    assert tags == {"ImageService", "OperationService", "FolderService", "Events"}
    assert len(operation["tags"]) == 1 and operation["tags"][0] in tags
    assert operation["summary"] and len(operation["description"]) > len(operation["summary"])
    for parameter in _parameters(operation):
        assert parameter.get("description"), (verb, path, parameter["name"])


def test_every_field_of_every_message_is_described() -> None:
    for name, schema in SCHEMAS.items():
        for field, prop in schema.get("properties", {}).items():
            if field != "@type":  # the Any's type URL: a constant
                assert prop.get("description"), f"{name}.{field}"


@pytest.mark.parametrize(("verb", "path", "operation"), OPERATIONS)
def test_every_error_status_carries_the_contract_status(
    verb: str, path: str, operation: dict[str, Any]
) -> None:
    responses = operation["responses"]
    errors = {status: r for status, r in responses.items() if status != "200"}

    assert "default" not in responses
    assert {"400", "401", "403", "500", "503"} <= set(errors)
    assert ("404" in errors) == ("{" in path or operation["operationId"] in _FINDING)
    assert ("409" in errors) == (operation["operationId"] in WRITES)
    for status, response in responses.items():
        assert "X-Request-Id" in response["headers"], (verb, path, status)
    for response in errors.values():
        schema = response["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Status"}, (verb, path)


_FINDING = {"Image_GetLatestByFamily", "Image_Create"}  # a family, or an imageId source


@pytest.mark.parametrize(("verb", "path", "operation"), OPERATIONS)
def test_headers_are_on_the_operations_that_take_them(
    verb: str, path: str, operation: dict[str, Any]
) -> None:
    headers = {p["name"] for p in _parameters(operation) if p["in"] == "header"}

    assert "X-Request-Id" in headers
    assert ("Idempotency-Key" in headers) == (operation["operationId"] in WRITES), (verb, path)


def test_the_event_stream_is_documented_as_one() -> None:
    operation = DOCUMENT["paths"]["/kiln/v1/events"]["get"]
    parameters = {p["name"]: p for p in _parameters(operation)}

    assert operation["tags"] == ["Events"]
    assert list(operation["responses"]["200"]["content"]) == ["text/event-stream"]
    assert parameters["folderId"]["required"] and parameters["Last-Event-ID"]["in"] == "header"
    assert "429" in operation["responses"]


def test_path_ids_carry_the_id_rules() -> None:
    rules = {
        "/compute/v1/images/{imageId}": "^(?:img[0-9a-z]{17})$",
        "/operations/{operationId}": "^(?:opr[0-9a-z]{17})$",
        "/resource-manager/v1/folders/{resourceId}:listAccessBindings": r"^(?:[^/\x00]{1,50})$",
        "/compute/v1/images/{resourceId}:listAccessBindings": "^(?:img[0-9a-z]{17})$",
    }
    for path, pattern in rules.items():
        operation = DOCUMENT["paths"][path]["get"]
        (parameter,) = [p for p in operation["parameters"] if p.get("in") == "path"]
        assert parameter["schema"] == {"type": "string", "pattern": pattern}, path


def test_a_create_links_to_what_takes_its_image_and_operation() -> None:
    links = DOCUMENT["paths"]["/compute/v1/images"]["post"]["responses"]["200"]["links"]
    operation_ids = {op["operationId"] for _, _, op in OPERATIONS}

    assert links["Image_Get"]["parameters"] == {"imageId": "$response.body#/metadata/imageId"}
    assert links["Operation_Get"]["parameters"] == {"operationId": "$response.body#/id"}
    for name in ("Image_Update", "Image_Delete", "Image_SetAccessBindings"):
        assert name in links
    assert all(link["operationId"] in operation_ids for link in links.values())


def test_constraints_the_api_enforces_are_in_the_schemas() -> None:
    create = SCHEMAS["CreateImageRequest"]
    binding = SCHEMAS["AccessBinding"]["properties"]
    disk_size = create["properties"]["minDiskSize"]["anyOf"][0]

    assert [branch["required"] for branch in create["oneOf"]] == [
        ["imageId"], ["diskId"], ["snapshotId"], ["uri"]
    ]  # fmt: skip
    assert disk_size["anyOf"] == [{"const": 0}, {"minimum": 4194304}]
    assert "compute.viewer" in binding["roleId"]["enum"]
    assert "system" in SCHEMAS["Subject"]["properties"]["type"]["enum"]
    family = next(
        p for p in DOCUMENT["paths"]["/compute/v1/images:latestByFamily"]["get"]["parameters"]
        if p.get("name") == "family"
    )  # fmt: skip
    assert family["required"] and not re.fullmatch(family["schema"]["pattern"][1:-1], "")
