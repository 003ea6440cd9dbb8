"""The client's transport: one pooled aiohttp session, bounded concurrency, retries of
transient failures with exponential backoff and full jitter, and the one error type.

A server that cannot be reached at all (connection refused, no such host, no answer to the
connection) is tried once more, quickly, then reported: retrying it for seconds would only
delay the message that names the URL."""

import asyncio
import os
import socket
import ssl
from collections.abc import Mapping
from typing import Any

import aiohttp
import msgspec
import tenacity

from contracts.errors import HTTP_STATUS, Code

# The HTTP status of an error body that is not the contract's (a proxy's HTML page, say).
_CODE_OF_STATUS = {
    400: Code.INVALID_ARGUMENT,
    401: Code.UNAUTHENTICATED,
    403: Code.PERMISSION_DENIED,
    404: Code.NOT_FOUND,
    409: Code.ABORTED,
    429: Code.RESOURCE_EXHAUSTED,
    499: Code.CANCELLED,
    500: Code.INTERNAL,
    501: Code.UNIMPLEMENTED,
    503: Code.UNAVAILABLE,
    504: Code.DEADLINE_EXCEEDED,
}
_REQUEST_INFO = "type.googleapis.com/google.rpc.RequestInfo"
MAX_RETRY_AFTER = 30.0
CONNECT_SECONDS = 5.0  # a connection not made in this time: the server is unreachable
UNREACHABLE_ATTEMPTS = 2  # the first try and one quick retry


class KilnError(Exception):
    """Every failure the client reports: an API error, a failed operation, or no answer at all.

    `code` is the gRPC code (a `contracts.errors.Code` when known); `http_status` is 0 when no
    HTTP response was received (connection refused, timeout, a wait that ran out of time).
    """

    def __init__(
        self,
        code: int,
        message: str,
        http_status: int = 0,
        request_id: str = "",
        *,
        retry_after: float | None = None,
    ) -> None:
        self.code: int = Code(code) if code in Code._value2member_map_ else code
        self.message = message
        self.http_status = http_status
        self.request_id = request_id
        self.retry_after = retry_after
        super().__init__(f"{self.code_name}: {message}")

    @property
    def code_name(self) -> str:
        return self.code.name if isinstance(self.code, Code) else str(self.code)

    @property
    def transient(self) -> bool:
        """Worth retrying: no answer, 429, or a 5xx other than 501 (not implemented)."""
        status = self.http_status
        return status in (0, 429) or (status >= 500 and status != 501)

    @classmethod
    def from_status(cls, code: int, message: str, request_id: str = "") -> "KilnError":
        """An operation's `error` (google.rpc.Status), with the HTTP status of its code."""
        status = HTTP_STATUS.get(Code(code), 500) if code in Code._value2member_map_ else 500
        return cls(code, message, status, request_id)


class Unreachable(KilnError):
    """No connection to the server could be made: nothing was sent (code UNAVAILABLE)."""

    def __init__(self, base_url: str, reason: str) -> None:
        super().__init__(Code.UNAVAILABLE, f"cannot reach Kiln at {base_url}: {reason}")


def no_answer(method: str, url: str, base_url: str, exc: Exception) -> KilnError:
    """The KilnError of a call that got no HTTP answer (`exc` from aiohttp, or a timeout)."""
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return Unreachable(base_url, _unreachable_because(exc))
    reason = str(exc) or type(exc).__name__
    return KilnError(Code.UNAVAILABLE, f"{method} {url}: {reason}")


def _unreachable_because(exc: Exception) -> str:
    """A few words: `connection refused`, `name or service not known`, `no answer in 5 s`."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return f"no answer in {CONNECT_SECONDS:g} s"
    error = getattr(exc, "os_error", None)
    if isinstance(error, socket.gaierror) and error.strerror:
        return error.strerror.lower()
    if isinstance(error, OSError) and not isinstance(error, ssl.SSLError) and error.errno:
        return os.strerror(error.errno).lower()
    return str(exc)


class _ErrorBody(msgspec.Struct):
    """The contract's error shape, read leniently (unknown detail types are kept as dicts)."""

    code: int
    message: str
    details: list[dict[str, Any]] = []


_error_decoder = msgspec.json.Decoder(_ErrorBody)


def error_of(status: int, body: bytes, headers: Mapping[str, str]) -> KilnError:
    request_id = headers.get("X-Request-Id", "")
    retry_after = _seconds(headers.get("Retry-After"))
    try:
        parsed = _error_decoder.decode(body)
    except msgspec.DecodeError:
        code = _CODE_OF_STATUS.get(status, Code.UNKNOWN)
        text = body.decode(errors="replace").strip()[:200] or "no error body"
        message = f"HTTP {status}: {text}"
        return KilnError(code, message, status, request_id, retry_after=retry_after)
    for detail in parsed.details:
        if detail.get("@type") == _REQUEST_INFO and detail.get("requestId"):
            request_id = str(detail["requestId"])
    return KilnError(parsed.code, parsed.message, status, request_id, retry_after=retry_after)


def _seconds(value: str | None) -> float | None:
    try:
        return min(float(value), MAX_RETRY_AFTER) if value else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


class _Backoff(tenacity.wait.wait_base):
    """Full-jitter exponential backoff, but never sooner than the server's Retry-After."""

    def __init__(self, base: float, cap: float) -> None:
        self._jitter = tenacity.wait_random_exponential(multiplier=base, max=cap)

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        delay = self._jitter(retry_state)
        error = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(error, KilnError) and error.retry_after is not None:
            delay = max(delay, error.retry_after)
        return delay


def _is_transient(error: BaseException) -> bool:
    return isinstance(error, KilnError) and error.transient


class _StopUnreachable(tenacity.stop.stop_base):
    """Stop once a server that cannot be reached has had its one quick retry."""

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        return isinstance(error, Unreachable) and retry_state.attempt_number >= UNREACHABLE_ATTEMPTS


class Transport:
    """Opened once per client; every call goes through `call`."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        concurrency: int,
        retries: int,
        timeout: float,
        backoff: float,
        max_backoff: float,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._concurrency = concurrency
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=CONNECT_SECONDS)
        self._limit = asyncio.Semaphore(concurrency)
        self._session: aiohttp.ClientSession | None = None
        self._retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(retries + 1) | _StopUnreachable(),
            wait=_Backoff(backoff, max_backoff),
            retry=tenacity.retry_if_exception(_is_transient),
            reraise=True,
        )

    def open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._concurrency),
                headers=self._headers,
                timeout=self._timeout,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        idempotency_key: str | None = None,
    ) -> bytes:
        """The response body of a 2xx answer; a KilnError otherwise (after the retries)."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        async for attempt in self._retrying.copy():
            with attempt:
                return await self._once(method, path, params, body, headers)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _once(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: bytes | None,
        headers: dict[str, str],
    ) -> bytes:
        url = self.base_url + path
        async with self._limit:
            try:
                async with self.open().request(
                    method, url, params=params, data=body, headers=headers
                ) as response:
                    data = await response.read()
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise no_answer(method, url, self.base_url, exc) from exc
        if response.status >= 400:
            raise error_of(response.status, data, response.headers)
        return data
