"""Every query parameter of every route in the OpenAPI document, and a few it does not know,
given arbitrary text: never a 5xx; a refusal is the contract's error shape (`{code, message,
details}`) and a 400 names the parameter. Found by Schemathesis: a page token holding a
non-ASCII character was a 500 (hmac.compare_digest refuses such a str)."""

import re
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.openapi import document
from tests.gateway.conftest import FOLDER, Api, Reply

UNKNOWN = ["unknown", "folderid", "Ünïcödé", "page size"]
# Enough for a valid request to reach the parameter under test.
BASELINE = {"folderId": FOLDER, "family": "family-a"}
# Any character but a lone surrogate (no URL can carry one), control characters included.
CHARACTERS = st.characters(exclude_categories=["Cs"])
VALUES = st.one_of(
    st.text(CHARACTERS, max_size=40),
    st.text(CHARACTERS, min_size=90, max_size=400),
    # Past every length limit (the longest is 2000), in ASCII so the URL stays under the
    # 8 KiB request line that aiohttp's HTTP parser accepts.
    st.text(st.characters(max_codepoint=0x7F), min_size=990, max_size=2100),
)


def _routes() -> list[tuple[str, str, list[str]]]:
    """(verb, path template, query parameter names) of every operation of the document."""
    routes = []
    for path, item in document()["paths"].items():
        for verb, operation in item.items():
            parameters = operation.get("parameters", [])
            names = [p["name"] for p in parameters if p.get("in") == "query"]
            routes.append((verb.upper(), path, names))
    return routes


# (verb, path, the valid parameters sent along, the parameter under test)
CASES = [
    (verb, path, {k: v for k, v in BASELINE.items() if k in names}, name)
    for verb, path, names in _routes()
    for name in [*names, *UNKNOWN, *re.findall(r"{(\w+)}", path)]
]


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """Parsing a query does not depend on the store: one backend is enough here."""
    return f"sqlite:///{tmp_path / 'kiln.db'}"


@pytest.fixture
async def path_ids(api: Api) -> dict[str, str]:
    """Ids of things that exist, so that every route gets past its path check."""
    created = await api.create(name="fuzzed")
    assert created.status == 200, created.body
    image_id = created.json["metadata"]["imageId"]
    return {"imageId": image_id, "resourceId": image_id, "operationId": created.json["id"]}


def _url(path: str, path_ids: dict[str, str]) -> str:
    if path.startswith("/resource-manager/"):
        path_ids = {**path_ids, "resourceId": FOLDER}
    return re.sub(r"{(\w+)}", lambda m: path_ids[m.group(1)], path)


async def _send(api: Api, verb: str, url: str, params: dict[str, str]) -> Reply:
    """The reply, without waiting for an event stream to end: it does not."""
    body = b"{}" if verb in ("POST", "PATCH") else None
    async with api.client.request(verb, url, params=params, data=body) as response:
        if response.content_type == "text/event-stream":
            return Reply(response.status, b"", response.headers)
        return Reply(response.status, await response.read(), response.headers)


def _assert_error_shape(reply: Reply, name: str) -> None:
    body = reply.json
    assert set(body) == {"code", "message", "details"}, body
    assert isinstance(body["code"], int) and isinstance(body["message"], str), body
    assert body["details"][0]["@type"] == "type.googleapis.com/google.rpc.RequestInfo", body
    if reply.status == 400:
        # INVALID_ARGUMENT, or OUT_OF_RANGE for an event position past the folder's last
        assert reply.code in (3, 11) and reply.message.startswith(f"{name}:"), body


@pytest.mark.parametrize(("verb", "path", "baseline", "name"), CASES)
@settings(
    max_examples=25,
    deadline=timedelta(seconds=5),  # one request each: far below, unless something hangs
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(value=VALUES)
async def test_any_text_in_a_query_parameter_is_answered_below_500(
    api: Api,
    path_ids: dict[str, str],
    verb: str,
    path: str,
    baseline: dict[str, str],
    name: str,
    value: str,
) -> None:
    reply = await _send(api, verb, _url(path, path_ids), {**baseline, name: value})

    assert reply.status < 500, (verb, path, name, value, reply.body)
    if reply.status >= 400:
        _assert_error_shape(reply, name)
