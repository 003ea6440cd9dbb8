"""Every failure answers the contract's error shape with the right status, never a 5xx for
bad input; request ids travel from X-Request-Id into the error details."""

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient

from bus.base import BusUnavailable
from gateway.middleware import errors, request_context
from store.db import Contention, StoreUnavailable
from tests.gateway.conftest import FOLDER, MISSING_IMAGE, URI, Api, Reply

REQUEST_INFO = "type.googleapis.com/google.rpc.RequestInfo"
HTTP_OF_CODE = {1: 499, 3: 400, 5: 404, 6: 409, 9: 400, 10: 409, 12: 405, 13: 500, 14: 503}


def assert_error_shape(reply: Reply, case: object = "") -> None:
    assert reply.headers["Content-Type"].startswith("application/json"), case
    body = reply.json
    assert set(body) == {"code", "message", "details"}, (case, body)
    assert isinstance(body["code"], int) and body["message"], (case, body)
    assert HTTP_OF_CODE[body["code"]] == reply.status, (case, reply.status, body)
    assert body["details"] == [
        {"@type": REQUEST_INFO, "requestId": reply.headers["X-Request-Id"]}
    ], (case, body)


async def _body_targets(api: Api) -> list[tuple[str, str]]:
    image_id = await api.new_image()
    return [
        ("POST", "/compute/v1/images"),
        ("PATCH", f"/compute/v1/images/{image_id}"),
        ("POST", f"/compute/v1/images/{image_id}:setAccessBindings"),
        ("POST", f"/compute/v1/images/{image_id}:updateAccessBindings"),
    ]


async def test_malformed_bodies_are_400_in_the_error_shape(api: Api) -> None:
    bodies = [
        b"{",
        b"not json",
        b"[]",
        b'[{"folderId": "f"}]',
        b'"a string"',
        b"42",
        b"null",
        b"true",
        b'{"folderId": "\xff\xfe"}',
        b'{"folderId": "f", "uri": "u"} trailing',
        b'{"folderId": NaN}',
        b'{"minDiskSize": Infinity}',
        b'{"folderId": "a\x00b"',
        b"{'folderId': 'single quotes'}",
        b'{"labels": {"a": {"b": {}}}}',
        b'{"minDiskSize": 1' + b"0" * 5000 + b"}",
        b'{"minDiskSize": 1e400}',
        b"[" * 30000,
        b'{"a":' * 10000,
        b"[" * 30000 + b"]" * 30000,
    ]
    for method, path in await _body_targets(api):
        for body in bodies:
            reply = await api.call(
                method, path, data=body, headers={"Content-Type": "application/json"}
            )
            case = (method, path, body[:40])
            assert reply.status == 400, (case, reply.body)
            assert_error_shape(reply, case)


async def test_deeply_nested_json_beyond_the_body_limit(api: Api) -> None:
    reply = await api.call("POST", "/compute/v1/images", data=b"[" * 100_000)

    assert 400 <= reply.status < 500, reply.body
    assert_error_shape(reply)


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    """A streamed body: sent chunked, with no Content-Length up front."""
    for start in range(0, len(body), 8192):
        yield body[start : start + 8192]


async def test_a_body_over_the_limit_is_refused(api: Api) -> None:
    body = f'{{"folderId": "{FOLDER}", "uri": "{URI}", "description": "{"d" * 70_000}"}}'

    reply = await api.call("POST", "/compute/v1/images", data=body)
    chunked = await api.call("POST", "/compute/v1/images", data=_chunks(body.encode()))

    for r in (reply, chunked):
        assert 400 <= r.status < 500, r.body
        assert_error_shape(r)
        assert "65536" in r.message
    assert (await api.list()).json == {}


async def test_unknown_paths_are_404_in_the_error_shape(api: Api) -> None:
    for path in (
        "/",
        "/nope",
        "/compute/v1/disks",
        "/compute/v2/images",
        "/compute/v1/images/a/b/c",
        "/compute/v1/images/x:frobnicate",
        "/operations",
        "/operations/x/y",
    ):
        reply = await api.call("GET", path)
        assert reply.status == 404, (path, reply.body)
        assert reply.code == 5
        assert_error_shape(reply, path)


async def test_wrong_verbs_answer_the_error_shape(api: Api) -> None:
    image_id = await api.new_image()
    cases = [
        ("PUT", f"/compute/v1/images/{image_id}"),
        ("POST", f"/compute/v1/images/{image_id}"),
        ("DELETE", "/compute/v1/images"),
        ("PATCH", "/compute/v1/images"),
        ("POST", "/compute/v1/images:latestByFamily"),
        ("GET", f"/compute/v1/images/{image_id}:setAccessBindings"),
        ("POST", f"/compute/v1/images/{image_id}:listAccessBindings"),
        ("DELETE", "/operations/opr1"),
        ("POST", "/operations/opr1"),
    ]
    for method, path in cases:
        reply = await api.call(method, path)
        assert 400 <= reply.status < 600 and reply.status not in (500, 503), (method, path)
        assert_error_shape(reply, (method, path))
    assert (await api.image(image_id))["status"] == "CREATING"


async def test_the_request_id_is_echoed_and_used_in_details(api: Api) -> None:
    given = str(uuid.uuid4())

    failed = await api.call("GET", "/compute/v1/images/img-x", headers={"X-Request-Id": given})
    ok = await api.call(
        "GET", "/compute/v1/images", params={"folderId": FOLDER}, headers={"X-Request-Id": "req-2"}
    )
    generated = await api.get("img-x")
    unusable = await api.call(
        "GET", "/compute/v1/images/img-x", headers={"X-Request-Id": "has space\tand tab"}
    )
    unknown_path = await api.call("GET", "/nope", headers={"X-Request-Id": "req-3"})

    assert failed.headers["X-Request-Id"] == given
    assert failed.json["details"][0]["requestId"] == given
    assert ok.status == 200 and ok.headers["X-Request-Id"] == "req-2"
    assert generated.headers["X-Request-Id"]
    assert generated.json["details"][0]["requestId"] == generated.headers["X-Request-Id"]
    assert unusable.headers["X-Request-Id"] != "has space\tand tab"
    assert unusable.json["details"][0]["requestId"] == unusable.headers["X-Request-Id"]
    assert unknown_path.json["details"][0]["requestId"] == "req-3"


async def test_error_codes_match_their_http_status(api: Api) -> None:
    image_id = await api.new_image(name="taken")
    await api.delete(image_id)
    replies = [
        await api.get(MISSING_IMAGE),  # 5
        await api.create(name="taken"),  # 6
        await api.delete(image_id),  # 9
        await api.create(name="Bad"),  # 3
        await api.call("PUT", f"/compute/v1/images/{image_id}"),  # 12
    ]

    assert [r.json["code"] for r in replies] == [5, 6, 9, 3, 12]
    for reply in replies:
        assert_error_shape(reply)


async def test_a_lone_surrogate_escape_is_refused(api: Api) -> None:
    bodies = [
        b'{"folderId": "\\ud800", "uri": "https://x"}',
        b'{"folderId": "f", "uri": "https://x", "description": "\\udc00"}',
        b'{"folderId": "f", "uri": "https://x", "productIds": ["\\ud800"]}',
    ]
    for body in bodies:
        reply = await api.call("POST", "/compute/v1/images", data=body)

        assert reply.status == 400, (body, reply.body)
        assert_error_shape(reply, body)
    assert (await api.list()).json == {}


async def test_a_nul_character_never_causes_a_5xx(api: Api) -> None:
    calls = [
        ("GET", "/compute/v1/images/img%00x", None, None),
        ("GET", "/compute/v1/images", {"folderId": "a\x00b"}, None),
        ("GET", "/compute/v1/images", {"folderId": FOLDER, "filter": 'name = "a\x00"'}, None),
        ("GET", "/compute/v1/images:latestByFamily", {"folderId": "a\x00", "family": "abc"}, None),
        ("GET", "/operations/opr%00x", None, None),
        ("POST", "/compute/v1/images", None, {"folderId": "a\x00b", "uri": URI}),
        ("POST", "/compute/v1/images", None, {"folderId": FOLDER, "imageId": "img\x00"}),
    ]
    statuses = []
    for method, path, params, body in calls:
        reply = await api.call(method, path, params=params, json_body=body)
        statuses.append((path, reply.status))
        if reply.status >= 400:
            assert_error_shape(reply, path)

    assert all(status < 500 for _, status in statuses), statuses


async def _rows(api: Api) -> dict[str, int]:
    """How many rows each table holds: what a refused request must not change."""
    counts = {}
    async with api.db.transaction() as conn:
        for table in ("images", "operations", "access_bindings", "outbox", "idempotency_keys"):
            row = await conn.fetchrow(f"SELECT COUNT(*) AS n FROM {table}")
            counts[table] = int(row["n"]) if row else 0
    return counts


HUGE_LABELS = {f"k{i}": "v" for i in range(3000)}  # within the body limit, far over 64 labels
USER = {"id": "u1", "type": "userAccount"}


async def test_hostile_bodies_are_400_and_change_nothing(api: Api) -> None:
    image_id = await api.new_image()
    folder = f"/resource-manager/v1/folders/{FOLDER}"
    delta = {"action": "ADD", "accessBinding": {"roleId": "viewer", "subject": USER}}
    cases: dict[tuple[str, str], list[object]] = {
        ("POST", "/compute/v1/images"): [
            {"folderId": FOLDER, "uri": URI, "bogus": 1},
            {"folderId": FOLDER, "uri": URI, "os": {"type": "LINUX", "bogus": 1}},
            {"folderId": FOLDER, "uri": URI, "hardwareGeneration": {"legacyFeatures": {"x": 1}}},
            {"folderId": 5, "uri": URI},
            {"folderId": FOLDER, "uri": ["x"]},
            {"folderId": FOLDER, "uri": URI, "labels": HUGE_LABELS},
            {"folderId": FOLDER, "uri": URI, "productIds": [{}]},
            {"folderId": {"$gt": ""}, "uri": URI},
        ],
        ("PATCH", f"/compute/v1/images/{image_id}"): [
            {"updateMask": "labels", "labels": HUGE_LABELS},
            {"updateMask": "description", "bogus": True},
            {"updateMask": 5},
            {"updateMask": "labels", "labels": "x"},
            {"updateMask": "name", "imageId": "other"},
        ],
        ("POST", f"/compute/v1/images/{image_id}:setAccessBindings"): [
            {"accessBindings": [{"roleId": "viewer", "subject": {**USER, "bogus": 1}}]},
            {"accessBindings": {"roleId": "viewer", "subject": USER}},
            {"accessBindings": [{"roleId": 7, "subject": USER}]},
            {"accessBindings": [{"roleId": "viewer", "subject": USER}] * 1001},
        ],
        ("POST", f"/compute/v1/images/{image_id}:updateAccessBindings"): [
            {"accessBindingDeltas": [{**delta, "action": "FLIP"}]},
            {"accessBindingDeltas": "ADD"},
            {"accessBindingDeltas": [{**delta, "bogus": 1}]},
        ],
        ("POST", f"{folder}:setAccessBindings"): [
            {"accessBindings": [{"roleId": "viewer"}]},
            {"accessBindings": [{"roleId": "viewer", "subject": USER}], "resourceId": "x"},
        ],
        ("POST", f"{folder}:updateAccessBindings"): [
            {"accessBindingDeltas": [{**delta, "action": 9}]},
            {"accessBindingDeltas": None, "extra": []},
        ],
    }
    before = await _rows(api)

    for (method, path), bodies in cases.items():
        for body in bodies:
            async with asyncio.timeout(5):  # refused at once: no hang
                reply = await api.call(method, path, json_body=body)
            case = (method, path, str(body)[:60])
            assert reply.status == 400, (case, reply.body)
            assert_error_shape(reply, case)

    assert await _rows(api) == before


async def test_a_page_token_of_another_method_is_refused(api: Api) -> None:
    image_id = await api.new_image()
    for n in range(3):
        await api.new_image(name=f"n{n}")
        await api.update(image_id, {"updateMask": "description", "description": f"d{n}"})
    grants = [{"roleId": "viewer", "subject": {"id": f"u{n}", "type": "userAccount"}} for n in "ab"]
    await api.set_bindings(image_id, {"accessBindings": grants})
    folder = f"/resource-manager/v1/folders/{FOLDER}:listAccessBindings"
    await api.call("POST", folder.replace("list", "set"), json_body={"accessBindings": grants})
    tokens = {
        "list": (await api.list(pageSize=1)).json["nextPageToken"],
        "operations": (await api.operations(image_id, pageSize=1)).json["nextPageToken"],
        "bindings": (await api.list_bindings(image_id, pageSize=1)).json["nextPageToken"],
        "folder": (await api.call("GET", folder, params={"pageSize": "1"})).json["nextPageToken"],
    }
    uses = {
        "list": lambda token: api.list(pageSize=1, pageToken=token),
        "operations": lambda token: api.operations(image_id, pageSize=1, pageToken=token),
        "bindings": lambda token: api.list_bindings(image_id, pageSize=1, pageToken=token),
        "folder": lambda token: api.call(
            "GET", folder, params={"pageSize": "1", "pageToken": token}
        ),
    }
    for issued_by, token in tokens.items():
        for used_by, use in uses.items():
            reply = await use(token)
            expected = 200 if used_by == issued_by else 400
            assert reply.status == expected, (issued_by, used_by, reply.body)


@pytest.mark.parametrize(
    "fault",
    [
        StoreUnavailable("PostgreSQL unavailable: connection refused"),
        Contention("deadlock detected"),
        BusUnavailable("broker did not confirm"),
    ],
)
async def test_a_fault_that_may_pass_is_503_never_500(
    aiohttp_client: AiohttpClient, fault: Exception
) -> None:
    async def failing(request: web.Request) -> web.Response:
        raise fault

    app = web.Application(middlewares=[request_context, errors])
    app.router.add_get("/x", failing)
    client = await aiohttp_client(app)

    response = await client.get("/x")
    body = await response.json()
    assert (response.status, body["code"]) == (503, 14), body


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("family", "X", "3 to 63 characters: lowercase letters, digits and hyphens"),
        ("name", "Bad Name", "1 to 63 characters: lowercase letters, digits, '-' and '_'"),
    ],
)
async def test_a_malformed_name_or_family_is_refused_in_words(
    api: Api, field: str, value: str, rule: str
) -> None:
    reply = await api.create(**{field: value})

    assert reply.status == 400 and reply.code == 3
    assert reply.message.startswith(f"{field}: must be empty, or {rule}"), reply.message
    assert "regex" not in reply.message and "[a-z]" not in reply.message


async def test_a_message_quoting_the_request_escapes_its_control_characters(api: Api) -> None:
    """The document's Status.message holds no NUL: a field name sent with one is quoted
    escaped (found by Schemathesis' response-schema check)."""
    reply = await api.create(**{"bad\x00\x12name": 1})

    assert reply.status == 400
    assert "\x00" not in reply.message and "\x12" not in reply.message
    assert reply.message == "bad\\x00\\x12name: unknown field", reply.message
