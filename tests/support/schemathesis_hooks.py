"""Hooks for the Schemathesis run of tests/gateway/test_api_schemathesis.py.

An Idempotency-Key names one request: sent again with another request it is refused (409
ALREADY_EXISTS), as the contract says. Schemathesis draws the same few keys for many different
requests, so the key of each positive case is made a fresh one; negative cases are sent as
drawn (a malformed key, or a missing Authorization header, is what they test)."""

import uuid
from typing import Any

import schemathesis

KEY = "Idempotency-Key"
MAX_KEY = 128  # gateway/writes.py


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case, kwargs: Any) -> None:
    if case.meta is not None and case.meta.generation.mode.is_negative:
        return
    key = (case.headers or {}).get(KEY)
    if isinstance(key, str) and 0 < len(key) <= MAX_KEY:
        case.headers[KEY] = str(uuid.uuid4())
