"""Contract test: every response body parses with the official SDK's protobuf classes
(json_format.Parse, unknown fields rejected) and passes the extra checks of spec §11:
lowerCamelCase keys, int64 as JSON strings, enums by name, RFC 3339 UTC timestamps,
`done` present, no empty Any, metadata/response `@type` as the RPC declares.

Bodies come from the `api` helper of conftest.py, which records every response the API tests
produce; `test_every_recorded_response_meets_the_contract` runs last and checks them all.
This module also drives every RPC itself, so it stands on its own when run alone.
"""

import json
import re
from typing import Any

# Importing these registers every message an Any may carry in the default descriptor pool.
import google.protobuf.empty_pb2
import google.rpc.error_details_pb2  # noqa: F401
import pytest
import yandex.cloud.access.access_pb2
import yandex.cloud.compute.v1.image_service_pb2  # noqa: F401
from google.protobuf import descriptor, descriptor_pool, json_format, message_factory
from google.rpc import status_pb2
from yandex.cloud.compute.v1 import image_pb2
from yandex.cloud.operation import operation_pb2

from tests.gateway.conftest import RECORDED, Api, FinishReady, Recorded

# From ../shared/spec/contract.json `rpcs`: response message, operation metadata, operation
# response. Copied so that the tests do not read the spec at run time.
RPCS: dict[str, tuple[str, str | None, str | None]] = {
    "ImageService.Get": ("yandex.cloud.compute.v1.Image", None, None),
    "ImageService.GetLatestByFamily": ("yandex.cloud.compute.v1.Image", None, None),
    "ImageService.List": ("yandex.cloud.compute.v1.ListImagesResponse", None, None),
    "ImageService.Create": (
        "yandex.cloud.operation.Operation",
        "yandex.cloud.compute.v1.CreateImageMetadata",
        "yandex.cloud.compute.v1.Image",
    ),
    "ImageService.Update": (
        "yandex.cloud.operation.Operation",
        "yandex.cloud.compute.v1.UpdateImageMetadata",
        "yandex.cloud.compute.v1.Image",
    ),
    "ImageService.Delete": (
        "yandex.cloud.operation.Operation",
        "yandex.cloud.compute.v1.DeleteImageMetadata",
        "google.protobuf.Empty",
    ),
    "ImageService.ListOperations": (
        "yandex.cloud.compute.v1.ListImageOperationsResponse",
        None,
        None,
    ),
    "ImageService.ListAccessBindings": (
        "yandex.cloud.access.ListAccessBindingsResponse",
        None,
        None,
    ),
    "ImageService.SetAccessBindings": (
        "yandex.cloud.operation.Operation",
        "yandex.cloud.access.SetAccessBindingsMetadata",
        "yandex.cloud.access.AccessBindingsOperationResult",
    ),
    "ImageService.UpdateAccessBindings": (
        "yandex.cloud.operation.Operation",
        "yandex.cloud.access.UpdateAccessBindingsMetadata",
        "yandex.cloud.access.AccessBindingsOperationResult",
    ),
    "OperationService.Get": ("yandex.cloud.operation.Operation", None, None),
    "OperationService.Cancel": ("yandex.cloud.operation.Operation", None, None),
}
ANY_PREFIX = "type.googleapis.com/"
# An Operation read back (OperationService, ListOperations) may be of any image RPC: its
# metadata type names the RPC, and so the response type it may carry.
RESPONSE_OF_METADATA = {meta: response for _, meta, response in RPCS.values() if meta}
HTTP_OF_CODE = {
    1: 499,
    2: 500,
    3: 400,
    4: 504,
    5: 404,
    6: 409,
    7: 403,
    8: 429,
    9: 400,
    10: 409,
    11: 400,
    12: 405,  # UNIMPLEMENTED only answers a verb the path lacks: 405, not 501
    13: 500,
    14: 503,
    15: 500,
    16: 401,
}
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6}|\.\d{9})?Z")
INT64 = {
    descriptor.FieldDescriptor.TYPE_INT64,
    descriptor.FieldDescriptor.TYPE_UINT64,
    descriptor.FieldDescriptor.TYPE_SINT64,
    descriptor.FieldDescriptor.TYPE_FIXED64,
    descriptor.FieldDescriptor.TYPE_SFIXED64,
}
INT32 = {
    descriptor.FieldDescriptor.TYPE_INT32,
    descriptor.FieldDescriptor.TYPE_UINT32,
    descriptor.FieldDescriptor.TYPE_SINT32,
    descriptor.FieldDescriptor.TYPE_FIXED32,
    descriptor.FieldDescriptor.TYPE_SFIXED32,
}
_pool = descriptor_pool.Default()


def _message_class(full_name: str) -> Any:
    return message_factory.GetMessageClass(_pool.FindMessageTypeByName(full_name))


# ---- the raw-JSON walk of spec §11 -----------------------------------------------------------


def _walk(value: Any, message: descriptor.Descriptor, at: str, problems: list[str]) -> None:
    """Check one JSON object against `message`: key spelling and the JSON kind of values."""
    if message.full_name == "google.protobuf.Timestamp":
        if not (isinstance(value, str) and TIMESTAMP.fullmatch(value)):
            problems.append(f"{at}: timestamp {value!r} is not RFC 3339 UTC with Z")
        return
    if message.full_name == "google.protobuf.Any":
        _walk_any(value, at, problems)
        return
    if not isinstance(value, dict):
        problems.append(f"{at}: expected an object for {message.full_name}")
        return
    by_json_name = {field.json_name: field for field in message.fields}
    for key, item in value.items():
        if key == "@type":
            continue
        field = by_json_name.get(key)
        if field is None:
            problems.append(f"{at}.{key}: not a lowerCamelCase field of {message.full_name}")
            continue
        _walk_field(item, field, f"{at}.{key}", problems)


def _walk_any(value: Any, at: str, problems: list[str]) -> None:
    if not isinstance(value, dict) or not value.get("@type"):
        problems.append(f"{at}: an Any without @type")
        return
    type_url = value["@type"]
    if not type_url.startswith(ANY_PREFIX):
        problems.append(f"{at}: @type {type_url!r} lacks {ANY_PREFIX}")
        return
    try:
        inner = _pool.FindMessageTypeByName(type_url.removeprefix(ANY_PREFIX))
    except KeyError:
        problems.append(f"{at}: @type {type_url!r} is not a known message")
        return
    _walk(value, inner, at, problems)


def _walk_field(
    value: Any, field: descriptor.FieldDescriptor, at: str, problems: list[str]
) -> None:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        if not isinstance(value, dict):
            problems.append(f"{at}: a map must be an object")
            return
        value_field = field.message_type.fields_by_name["value"]
        for key, item in value.items():
            _walk_scalar_or_message(item, value_field, f"{at}[{key!r}]", problems)
        return
    if field.is_repeated:
        if not isinstance(value, list):
            problems.append(f"{at}: a repeated field must be an array")
            return
        for index, item in enumerate(value):
            _walk_scalar_or_message(item, field, f"{at}[{index}]", problems)
        return
    _walk_scalar_or_message(value, field, at, problems)


def _walk_scalar_or_message(
    value: Any, field: descriptor.FieldDescriptor, at: str, problems: list[str]
) -> None:
    if field.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
        _walk(value, field.message_type, at, problems)
    elif field.type in INT64:
        if not (isinstance(value, str) and re.fullmatch(r"-?\d+", value)):
            problems.append(f"{at}: int64 {value!r} must be a JSON string of digits")
    elif field.type == descriptor.FieldDescriptor.TYPE_ENUM:
        if not (isinstance(value, str) and value in field.enum_type.values_by_name):
            problems.append(f"{at}: enum {value!r} must be a value name")
    elif field.type in INT32:
        if not (isinstance(value, int) and not isinstance(value, bool)):
            problems.append(f"{at}: int32 {value!r} must be a JSON number")
    elif field.type == descriptor.FieldDescriptor.TYPE_BOOL:
        if not isinstance(value, bool):
            problems.append(f"{at}: bool {value!r} must be true or false")
    elif field.type == descriptor.FieldDescriptor.TYPE_STRING and not isinstance(value, str):
        problems.append(f"{at}: string {value!r} must be a JSON string")


# ---- Operation rules ------------------------------------------------------------------------


def _type_name(any_value: Any) -> str:
    return str(any_value.get("@type", "")).removeprefix(ANY_PREFIX) if any_value else ""


def _check_operation(op: Any, rpc: str, at: str, problems: list[str]) -> None:
    if not isinstance(op, dict):
        problems.append(f"{at}: an Operation must be an object")
        return
    if not isinstance(op.get("done"), bool):
        problems.append(f"{at}: `done` must be present")
    for key in ("id", "createdAt", "modifiedAt", "metadata"):
        if key not in op:
            problems.append(f"{at}: `{key}` is missing")
    _, expected_meta, expected_response = RPCS[rpc]
    meta = _type_name(op.get("metadata"))
    if expected_meta is None:  # read back: the metadata says which RPC began it
        if meta not in RESPONSE_OF_METADATA:
            problems.append(f"{at}.metadata: @type {meta!r} is no image RPC's metadata")
        expected_response = RESPONSE_OF_METADATA.get(meta)
    elif meta != expected_meta:
        problems.append(f"{at}.metadata: @type {meta!r}, {rpc} declares {expected_meta!r}")
    if "response" in op:
        response = _type_name(op["response"])
        if response != expected_response:
            problems.append(f"{at}.response: @type {response!r}, expected {expected_response!r}")
        if op.get("done") is not True:
            problems.append(f"{at}: a response on an operation that is not done")
    if op.get("done") is True and ("response" in op) == ("error" in op):
        problems.append(f"{at}: a done operation has exactly one of error and response")


def contract_problems(record: Recorded) -> list[str]:
    """Everything in one recorded response that breaks the contract."""
    where = f"{record.method} {record.path} → {record.status}"
    problems: list[str] = []
    try:
        body = json.loads(record.body)
    except ValueError:
        return [f"{where}: body is not JSON: {record.body[:80]!r}"]
    if record.status != 200:
        message_name = "google.rpc.Status"
        fields: dict[str, Any] = body if isinstance(body, dict) else {}
        code = fields.get("code")
        if not isinstance(code, int) or HTTP_OF_CODE.get(code) != record.status:
            problems.append(f"{where}: code {code!r} is not HTTP {record.status}")
        details = fields.get("details")
        if not details or _type_name(details[0]) != "google.rpc.RequestInfo":
            problems.append(f"{where}: details must start with a google.rpc.RequestInfo")
    else:
        assert record.rpc is not None, "only API answers are checked"
        message_name = RPCS[record.rpc][0]
    message = _message_class(message_name)
    try:
        json_format.Parse(record.body, message())
    except json_format.ParseError as exc:
        problems.append(f"{where}: json_format.Parse as {message_name}: {exc}")
    _walk(body, message.DESCRIPTOR, "$", problems)
    if record.status == 200 and record.rpc is not None:
        if message_name == "yandex.cloud.operation.Operation":
            _check_operation(body, record.rpc, "$", problems)
        for index, op in enumerate(body.get("operations", [])):
            _check_operation(op, "OperationService.Get", f"$.operations[{index}]", problems)
    return [f"{where}: {p}" if not p.startswith(where) else p for p in problems]


def _assert_meets_contract(records: list[Recorded]) -> None:
    """Every answer of an RPC, and every error (the docs and /openapi.json are no RPC)."""
    api_answers = [r for r in records if r.rpc is not None or r.status != 200]
    problems = [problem for record in api_answers for problem in contract_problems(record)]
    assert not problems, "\n".join(problems[:50])


# ---- tests ----------------------------------------------------------------------------------


async def test_every_rpc_answers_within_the_contract(api: Api, finish_ready: FinishReady) -> None:
    """Drive every RPC through success and failure; check each answer at once."""
    binding = {"roleId": "viewer", "subject": {"id": "u1", "type": "userAccount"}}
    create = (
        await api.create(
            name="contract",
            family="fam",
            labels={"k": "v"},
            os={"type": "LINUX", "nvidia": {"driver": "1"}},
            hardwareGeneration={"generation2Features": {}},
        )
    ).json
    image_id = create["metadata"]["imageId"]
    await finish_ready(image_id)
    await api.new_image(name="second")
    await api.get(image_id)
    await api.latest("folder-a", "fam")
    await api.list(pageSize=1)
    await api.update(image_id, {"updateMask": "labels", "labels": {"x": "y"}})
    await api.set_bindings(image_id, {"accessBindings": [binding]})
    await api.update_bindings(
        image_id, {"accessBindingDeltas": [{"action": "REMOVE", "accessBinding": binding}]}
    )
    await api.list_bindings(image_id)
    await api.operation(create["id"])
    cancelled = (await api.create()).json
    await api.cancel(cancelled["id"])
    await api.cancel(cancelled["id"], "POST")
    await api.delete(image_id)
    await api.operations(image_id, pageSize=3)
    await api.operations(image_id)
    # and failures
    await api.get("img-missing")
    await api.latest("folder-a", "none")
    await api.list(pageSize=5000)
    await api.create(name="contract")
    await api.update("img-missing", {})
    await api.delete(image_id)
    await api.operations("img-missing")
    await api.list_bindings("img-missing")
    await api.set_bindings(image_id, {"accessBindings": [{"roleId": "x"}]})
    await api.update_bindings(image_id, {"accessBindingDeltas": []})
    await api.operation("opr-missing")
    await api.cancel("opr-missing", "POST")
    await api.call("GET", "/nowhere")
    await api.call("PUT", f"/compute/v1/images/{image_id}")

    answered = {(r.rpc, r.status == 200) for r in api.seen}
    for rpc in RPCS:
        assert (rpc, True) in answered and (rpc, False) in answered, rpc
    _assert_meets_contract(api.seen)


async def test_every_recorded_response_meets_the_contract() -> None:
    """Runs last (conftest orders it): every body any API test received."""
    if not RECORDED:
        pytest.skip("no API test ran in this session")
    assert {r.rpc for r in RECORDED if r.status == 200} >= set(RPCS)
    _assert_meets_contract(RECORDED)


# ---- the checker itself catches what it must -------------------------------------------------

IMAGE = {
    "id": "img1",
    "folderId": "f",
    "createdAt": "2026-01-02T03:04:05.123456Z",
    "size": "1",
    "minDiskSize": "4194304",
    "status": "READY",
    "labels": {"a": "b"},
}
OPERATION = {
    "id": "opr1",
    "createdAt": "2026-01-02T03:04:05Z",
    "modifiedAt": "2026-01-02T03:04:05Z",
    "done": False,
    "metadata": {
        "@type": ANY_PREFIX + "yandex.cloud.compute.v1.CreateImageMetadata",
        "imageId": "img1",
    },
}


def _record(rpc: str, body: Any, status: int = 200) -> Recorded:
    return Recorded(rpc, "GET", "/x", status, json.dumps(body).encode(), "checker")


def test_the_checker_accepts_well_formed_bodies() -> None:
    done = {
        **OPERATION,
        "done": True,
        "response": {"@type": ANY_PREFIX + "yandex.cloud.compute.v1.Image", **IMAGE},
    }
    error = {
        "code": 5,
        "message": "no",
        "details": [{"@type": ANY_PREFIX + "google.rpc.RequestInfo", "requestId": "r"}],
    }

    for record in (
        _record("ImageService.Get", IMAGE),
        _record("ImageService.Create", OPERATION),
        _record("OperationService.Get", done),
        _record("ImageService.Get", error, 404),
    ):
        assert contract_problems(record) == [], record


@pytest.mark.parametrize(
    ("rpc", "body", "status"),
    [
        ("ImageService.Get", {**IMAGE, "size": 1}, 200),
        ("ImageService.Get", {**IMAGE, "status": 2}, 200),
        ("ImageService.Get", {**IMAGE, "folder_id": "f"}, 200),
        ("ImageService.Get", {**IMAGE, "extra": 1}, 200),
        ("ImageService.Get", {**IMAGE, "createdAt": "2026-01-02T03:04:05+03:00"}, 200),
        ("ImageService.Get", {**IMAGE, "createdAt": "2026-01-02T03:04:05.1Z"}, 200),
        ("ImageService.List", {"images": [{**IMAGE, "storageSize": 5}]}, 200),
        ("ImageService.Create", {k: v for k, v in OPERATION.items() if k != "done"}, 200),
        (
            "ImageService.Create",
            {
                **OPERATION,
                "metadata": {"@type": ANY_PREFIX + "yandex.cloud.compute.v1.DeleteImageMetadata"},
            },
            200,
        ),
        ("ImageService.Create", {**OPERATION, "metadata": {}}, 200),
        ("ImageService.Create", {**OPERATION, "done": True, "response": {}}, 200),
        (
            "ImageService.Delete",
            {
                **OPERATION,
                "done": True,
                "response": {"@type": ANY_PREFIX + "yandex.cloud.compute.v1.Image"},
                "metadata": {"@type": ANY_PREFIX + "yandex.cloud.compute.v1.DeleteImageMetadata"},
            },
            200,
        ),
        ("OperationService.Get", {**OPERATION, "done": True}, 200),
        ("ImageService.Get", {"code": 5, "message": "x", "details": []}, 404),
        (
            "ImageService.Get",
            {
                "code": 3,
                "message": "x",
                "details": [{"@type": ANY_PREFIX + "google.rpc.RequestInfo", "requestId": "r"}],
            },
            404,
        ),
        (
            "ImageService.Get",
            {
                "code": 5,
                "message": "x",
                "extra": 1,
                "details": [{"@type": ANY_PREFIX + "google.rpc.RequestInfo", "requestId": "r"}],
            },
            404,
        ),
    ],
    ids=[
        "int64-number",
        "enum-number",
        "snake-key",
        "unknown-key",
        "offset-time",
        "one-fraction-digit",
        "nested-int64",
        "no-done",
        "wrong-metadata",
        "empty-any",
        "empty-response-any",
        "wrong-response",
        "done-without-result",
        "no-request-info",
        "code-status-mismatch",
        "unknown-error-key",
    ],
)
def test_the_checker_refuses_contract_breaks(rpc: str, body: Any, status: int) -> None:
    assert contract_problems(_record(rpc, body, status)), body


def test_operation_and_image_classes_are_the_sdks() -> None:
    assert _message_class("yandex.cloud.compute.v1.Image") is image_pb2.Image
    assert _message_class("yandex.cloud.operation.Operation") is operation_pb2.Operation
    assert _message_class("google.rpc.Status") is status_pb2.Status
