"""Hooks for the Schemathesis run of tests/gateway/test_api_schemathesis.py.

An Idempotency-Key names one request: sent again with another request it is refused (409
ALREADY_EXISTS), as the contract says. Schemathesis draws the same few keys for many different
requests, so the key of each positive case is made a fresh one; negative cases are sent as
drawn (a malformed key, or a missing Authorization header, is what they test).

A well-formed request can also meet a state that refuses it: a copy of an image that ended in
ERROR is FAILED_PRECONDITION, which the contract answers with 400. Schemathesis reuses ids
from earlier responses, so its schema-valid requests meet such images; the acceptance check
below is the built-in one but for that code."""

import uuid
from typing import Any

import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance

KEY = "Idempotency-Key"
MAX_KEY = 128  # gateway/http.py
FAILED_PRECONDITION = 9  # google.rpc.Code


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case, kwargs: Any) -> None:
    if case.meta is not None and case.meta.generation.mode.is_negative:
        return
    key = (case.headers or {}).get(KEY)
    if isinstance(key, str) and 0 < len(key) <= MAX_KEY:
        case.headers[KEY] = str(uuid.uuid4())


@schemathesis.check
def positive_data_acceptance_in_any_state(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    if response.status_code == 400 and _code(response) == FAILED_PRECONDITION:
        return None
    return positive_data_acceptance(ctx, response, case)


def _code(response: schemathesis.Response) -> object:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None
