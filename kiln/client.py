"""Kiln's async Python client: one method per API call, contract Structs in and out.

    async with KilnClient("http://127.0.0.1:8080", token) as kiln:  # a bearer token (JWT)
        op = await kiln.create_image(folder_id="f1", name="ubuntu", uri="https://…/u.qcow2")
        image = await kiln.wait(op)

Mutating calls carry an `Idempotency-Key` (a fresh uuid4 unless one is given) and every call
retries transient failures with the same key, so a retry never does the work twice.
"""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

import msgspec
import tenacity

from contracts.access import (
    AccessBinding,
    AccessBindingDelta,
    ListAccessBindingsResponse,
    SetAccessBindingsRequest,
    UpdateAccessBindingsRequest,
)
from contracts.codec import camel
from contracts.errors import Code
from contracts.images import CreateImageRequest, Image, ListImagesResponse, UpdateImageRequest
from contracts.operations import ListImageOperationsResponse, Operation, OperationResponse
from kiln.client_events import StreamEvent
from kiln.client_events import events as follow_events
from kiln.client_http import KilnError, Transport
from kiln.client_waits import OperationWaits

__all__ = [
    "AccessBinding",
    "AccessBindingDelta",
    "CreateImageRequest",
    "Image",
    "KilnClient",
    "KilnError",
    "Operation",
    "StreamEvent",
    "UpdateImageRequest",
]

T = TypeVar("T")
_decoders: dict[type, msgspec.json.Decoder[Any]] = {
    t: msgspec.json.Decoder(t)
    for t in (
        Image,
        Operation,
        ListImagesResponse,
        ListImageOperationsResponse,
        ListAccessBindingsResponse,
    )
}
_encoder = msgspec.json.Encoder()
IMAGES = "/compute/v1/images"


def _decode(data: bytes, message_type: type[T]) -> T:
    try:
        return _decoders[message_type].decode(data)  # type: ignore[no-any-return]
    except msgspec.DecodeError as exc:
        raise KilnError(Code.INTERNAL, f"unexpected response: {exc}", 200) from None


def _body(request: msgspec.Struct, *path_fields: str) -> bytes:
    """The JSON body of a request, without the fields the URL path carries."""
    raw = msgspec.to_builtins(request)
    for name in path_fields:
        raw.pop(name, None)
    return _encoder.encode(raw)


def _query(**values: str | int) -> dict[str, str]:
    return {camel(name): str(value) for name, value in values.items() if value}


def _key(idempotency_key: str | None) -> str:
    return idempotency_key or str(uuid.uuid4())


def _not_done(operation_id: str, timeout: float | None) -> str:
    return f"operation {operation_id} is not done after {timeout} s"


class KilnClient:
    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        concurrency: int = 64,
        retries: int = 5,
        timeout: float = 30.0,
        backoff: float = 0.2,
        max_backoff: float = 10.0,
    ) -> None:
        self._http = Transport(
            base_url,
            token,
            concurrency=concurrency,
            retries=retries,
            timeout=timeout,
            backoff=backoff,
            max_backoff=max_backoff,
        )
        self._waits = OperationWaits(self._http)

    @property
    def base_url(self) -> str:
        return self._http.base_url

    async def __aenter__(self) -> Self:
        self._http.open()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._waits.close()
        await self._http.close()

    async def _get(self, path: str, result: type[T], **query: str | int) -> T:
        return _decode(await self._http.call("GET", path, params=_query(**query)), result)

    async def _mutate(
        self, method: str, path: str, body: bytes | None, idempotency_key: str | None
    ) -> Operation:
        data = await self._http.call(method, path, body=body, idempotency_key=_key(idempotency_key))
        return _decode(data, Operation)

    # Images

    async def create_image(
        self,
        request: CreateImageRequest | None = None,
        /,
        *,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> Operation:
        """From a request Struct, or from its fields: `create_image(folder_id=…, uri=…)`."""
        if request is not None and fields:
            raise TypeError("create_image takes a request or its fields, not both")
        request = request or CreateImageRequest(**fields)
        operation = await self._mutate("POST", IMAGES, _body(request), idempotency_key)
        self._waits.remember(getattr(operation.metadata, "image_id", ""), request.folder_id)
        return operation

    async def get_image(self, image_id: str) -> Image:
        return await self._get(f"{IMAGES}/{quote(image_id, safe='')}", Image)

    async def list_images(
        self,
        folder_id: str,
        *,
        page_size: int = 0,
        page_token: str = "",
        filter: str = "",
        order_by: str = "",
    ) -> ListImagesResponse:
        return await self._get(
            IMAGES,
            ListImagesResponse,
            folder_id=folder_id,
            page_size=page_size,
            page_token=page_token,
            filter=filter,
            order_by=order_by,
        )

    async def iter_images(
        self, folder_id: str, *, page_size: int = 0, filter: str = "", order_by: str = ""
    ) -> AsyncIterator[Image]:
        """Every image of the folder that matches, page after page."""
        token = ""
        while True:
            page = await self.list_images(
                folder_id, page_size=page_size, page_token=token, filter=filter, order_by=order_by
            )
            for image in page.images:
                yield image
            if not (token := page.next_page_token):
                return

    async def latest_by_family(self, folder_id: str, family: str) -> Image:
        return await self._get(
            f"{IMAGES}:latestByFamily", Image, folder_id=folder_id, family=family
        )

    async def update_image(
        self,
        image: str | UpdateImageRequest,
        update_mask: str | Iterable[str] | None = None,
        *,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> Operation:
        """`update_image(id, description="…")` changes only the fields given (the mask is
        built from them); pass `update_mask` to reset fields, or a whole UpdateImageRequest."""
        if not isinstance(image, str) and (fields or update_mask is not None):
            raise TypeError("update_image takes an UpdateImageRequest alone, or an id and fields")
        if isinstance(image, str):
            if update_mask is None:
                update_mask = [camel(name) for name in fields]
            if not isinstance(update_mask, str):
                update_mask = ",".join(update_mask)
            image = UpdateImageRequest(image_id=image, update_mask=update_mask, **fields)
        path = f"{IMAGES}/{quote(image.image_id, safe='')}"
        return await self._mutate("PATCH", path, _body(image, "imageId"), idempotency_key)

    async def delete_image(self, image_id: str, *, idempotency_key: str | None = None) -> Operation:
        path = f"{IMAGES}/{quote(image_id, safe='')}"
        return await self._mutate("DELETE", path, None, idempotency_key)

    async def list_operations(
        self, image_id: str, *, page_size: int = 0, page_token: str = ""
    ) -> ListImageOperationsResponse:
        path = f"{IMAGES}/{quote(image_id, safe='')}/operations"
        return await self._get(
            path, ListImageOperationsResponse, page_size=page_size, page_token=page_token
        )

    # Access bindings

    async def list_access_bindings(
        self, image_id: str, *, page_size: int = 0, page_token: str = ""
    ) -> ListAccessBindingsResponse:
        path = f"{IMAGES}/{quote(image_id, safe='')}:listAccessBindings"
        return await self._get(
            path, ListAccessBindingsResponse, page_size=page_size, page_token=page_token
        )

    async def iter_access_bindings(self, image_id: str) -> AsyncIterator[AccessBinding]:
        token = ""
        while True:
            page = await self.list_access_bindings(image_id, page_token=token)
            for binding in page.access_bindings:
                yield binding
            if not (token := page.next_page_token):
                return

    async def set_access_bindings(
        self,
        image_id: str,
        bindings: Iterable[AccessBinding],
        *,
        idempotency_key: str | None = None,
    ) -> Operation:
        """Replace all of the image's bindings with `bindings` (empty: remove them all)."""
        request = SetAccessBindingsRequest(resource_id=image_id, access_bindings=list(bindings))
        path = f"{IMAGES}/{quote(image_id, safe='')}:setAccessBindings"
        return await self._mutate("POST", path, _body(request, "resourceId"), idempotency_key)

    async def update_access_bindings(
        self,
        image_id: str,
        deltas: Iterable[AccessBindingDelta],
        *,
        idempotency_key: str | None = None,
    ) -> Operation:
        request = UpdateAccessBindingsRequest(
            resource_id=image_id, access_binding_deltas=list(deltas)
        )
        path = f"{IMAGES}/{quote(image_id, safe='')}:updateAccessBindings"
        return await self._mutate("POST", path, _body(request, "resourceId"), idempotency_key)

    # Operations

    async def get_operation(self, operation_id: str) -> Operation:
        return await self._get(f"/operations/{quote(operation_id, safe='')}", Operation)

    async def cancel_operation(self, operation_id: str) -> Operation:
        path = f"/operations/{quote(operation_id, safe='')}:cancel"
        return _decode(await self._http.call("POST", path), Operation)

    async def wait_done(
        self,
        operation: Operation | str,
        timeout: float | None = None,
        *,
        poll: float = 0.05,
        max_poll: float = 2.0,
    ) -> Operation:
        """The operation once `done` (successful or not): followed on the server's event stream
        when it has one, polled with growing, jittered pauses otherwise.
        Raises KilnError(DEADLINE_EXCEEDED) if it is still running after `timeout` seconds."""
        if isinstance(operation, Operation) and operation.done:
            return operation
        operation_id = operation if isinstance(operation, str) else operation.id
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                if isinstance(operation, str):
                    operation = await self.get_operation(operation)
                done = await self._waits.wait(operation, self.get_operation, self.get_image)
        except TimeoutError:
            raise KilnError(Code.DEADLINE_EXCEEDED, _not_done(operation_id, timeout)) from None
        if done is not None:
            return done
        left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
        return await self._poll_done(operation_id, timeout, left, poll, max_poll)

    async def _poll_done(
        self,
        operation_id: str,
        timeout: float | None,
        left: float | None,
        poll: float,
        max_poll: float,
    ) -> Operation:
        polling = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_result(lambda op: not op.done),
            wait=tenacity.wait_exponential(multiplier=poll, exp_base=1.5, max=max_poll)
            + tenacity.wait_random(0, poll),
            stop=tenacity.stop_never if left is None else tenacity.stop_before_delay(left),
        )
        try:
            done: Operation = await polling(self.get_operation, operation_id)
        except tenacity.RetryError:
            raise KilnError(Code.DEADLINE_EXCEEDED, _not_done(operation_id, timeout)) from None
        return done

    async def wait(
        self, operation: Operation | str, timeout: float | None = None
    ) -> OperationResponse | None:
        """Follow the operation to done; its response (an Image for create and update), or
        its error raised as KilnError."""
        done = await self.wait_done(operation, timeout)
        if done.error is not None:
            request_id = next((d.request_id for d in done.error.details if d.request_id), "")
            raise KilnError.from_status(done.error.code, done.error.message, request_id)
        return done.response

    # Events (an extension: /kiln/v1/events)

    def events(
        self, folder_id: str, type: str | None = None, last_event_id: int | str | None = None
    ) -> AsyncIterator[StreamEvent]:
        """The folder's events as they happen (after `last_event_id`, a position, when given:
        replayed from the server's log first). Reconnects after a drop, resuming after the
        last position seen; `type` filters (`ready,failed` or full CloudEvent types)."""
        after = int(last_event_id) if last_event_id not in (None, "") else None
        return follow_events(self._http, folder_id, type or "", after)
