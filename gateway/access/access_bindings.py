"""Access-binding methods of an image and of a folder: list, set (replace all), update
(ADD/REMOVE deltas). A folder's bindings apply to every image in it; they are stored under
`folder/<folderId>`, which no image id can be."""

import base64
from collections.abc import Awaitable, Callable
from typing import cast

import msgspec
from aiohttp import web

from api import authorization
from api.authorization import Permission
from api.context import RequestContext
from api.mutating_calls import new_operation, replay
from api.pagination import page_size
from contracts.access import (
    AccessBinding,
    AccessBindingDelta,
    AccessBindingsOperationResult,
    ListAccessBindingsRequest,
    ListAccessBindingsResponse,
    RoleId,
    SetAccessBindingsMetadata,
    SetAccessBindingsRequest,
    Subject,
    SubjectType,
    UpdateAccessBindingsMetadata,
    UpdateAccessBindingsRequest,
)
from contracts.enums import AccessBindingAction, ImageStatus
from contracts.errors import FailedPrecondition, InvalidArgument
from contracts.ids import FOLDER_ID, IMAGE_ID, IdRule, checked_path
from contracts.operations import Operation
from gateway.access import binding_rules
from gateway.context import context_of
from gateway.http import body_request, idempotency_claim, query_request, respond
from gateway.keys import DB, PAGE_TOKENS
from gateway.publishing import publish_committed
from lifecycle import transitions
from runtime.clock import now_us
from store import bindings, image_events, operations
from store.bindings import BindingKey
from store.db import Connection
from store.idempotency import Claim
from store.operations import OperationRecord, to_operation

routes = web.RouteTableDef()
IMAGE = "/compute/v1/images/{resourceId:[^/:]+}"
FOLDER = "/resource-manager/v1/folders/{resourceId:[^/:]+}"
_position_codec = msgspec.json.Decoder(tuple[str, str, str])


def _binding(key: BindingKey) -> AccessBinding:
    """A stored binding: its role and subject type were checked when it was written."""
    role, kind, subject = cast(tuple[RoleId, SubjectType, str], key)
    return AccessBinding(role_id=role, subject=Subject(type=kind, id=subject))


def _delta(action: AccessBindingAction, key: BindingKey) -> AccessBindingDelta:
    return AccessBindingDelta(action=action, access_binding=_binding(key))


def _encode_position(key: BindingKey) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(key)).decode()


def _decode_position(text: str) -> BindingKey:
    try:
        return _position_codec.decode(base64.urlsafe_b64decode(text))
    except (ValueError, msgspec.DecodeError):
        raise InvalidArgument("pageToken: malformed") from None


async def _list_page(
    request: web.Request, conn: Connection, key: str, parsed: ListAccessBindingsRequest
) -> ListAccessBindingsResponse:
    """A page of the bindings stored under `key` (an image id or a folder's key)."""
    scope = f"bindings\n{key}"
    tokens, limit = request.app[PAGE_TOKENS], page_size(parsed.page_size)
    after = _decode_position(tokens.open(scope, parsed.page_token)) if parsed.page_token else None
    rows = await bindings.page(conn, key, after, limit + 1)
    more = len(rows) > limit
    token = tokens.issue(scope, _encode_position(bindings.key(rows[limit - 1]))) if more else ""
    return ListAccessBindingsResponse(access_bindings=rows[:limit], next_page_token=token)


@routes.get(IMAGE + ":listAccessBindings")
async def list_image_access_bindings(request: web.Request) -> web.Response:
    path = checked_path(request.match_info, resourceId=IMAGE_ID)
    parsed = query_request(request, ListAccessBindingsRequest, path)
    async with request.app[DB].reading() as conn:
        await authorization.image(
            conn, context_of(request), parsed.resource_id, Permission.LIST_BINDINGS
        )
        page = await _list_page(request, conn, parsed.resource_id, parsed)
    return respond(page)


@routes.get(FOLDER + ":listAccessBindings")
async def list_folder_access_bindings(request: web.Request) -> web.Response:
    path = checked_path(request.match_info, resourceId=FOLDER_ID)
    parsed = query_request(request, ListAccessBindingsRequest, path)
    folder_id = parsed.resource_id
    async with request.app[DB].reading() as conn:
        await authorization.require_on_folder(
            conn, context_of(request), folder_id, Permission.LIST_BINDINGS
        )
        page = await _list_page(request, conn, authorization.folder_resource(folder_id), parsed)
    return respond(page)


def _set_deltas(current: set[BindingKey], wanted: set[BindingKey]) -> list[AccessBindingDelta]:
    removed = [_delta(AccessBindingAction.REMOVE, key) for key in sorted(current - wanted)]
    added = [_delta(AccessBindingAction.ADD, key) for key in sorted(wanted - current)]
    return removed + added


def _update_deltas(
    current: set[BindingKey], request: UpdateAccessBindingsRequest
) -> list[AccessBindingDelta]:
    """Apply the deltas in order to a copy of `current`; keep only those that changed it."""
    state, effective = set(current), []
    for index, delta in enumerate(request.access_binding_deltas):
        field = f"accessBindingDeltas[{index}]"
        key = binding_rules.checked(delta.access_binding, f"{field}.accessBinding")
        if delta.action is AccessBindingAction.ADD and key not in state:
            state.add(key)
        elif delta.action is AccessBindingAction.REMOVE and key in state:
            state.remove(key)
        elif delta.action is AccessBindingAction.ACCESS_BINDING_ACTION_UNSPECIFIED:
            raise InvalidArgument(f"{field}.action: must be ADD or REMOVE")
        else:
            continue
        effective.append(_delta(delta.action, key))
    return effective


DeltaRule = Callable[[set[BindingKey]], list[AccessBindingDelta]]
Metadata = SetAccessBindingsMetadata | UpdateAccessBindingsMetadata


async def _apply(
    conn: Connection, key: str, deltas: list[AccessBindingDelta], op: OperationRecord
) -> None:
    """Change the bindings stored under `key`; the operation ends done with the deltas."""
    for delta in deltas:
        change = bindings.add if delta.action is AccessBindingAction.ADD else bindings.remove
        await change(conn, key, bindings.key(delta.access_binding))
    op.done = True
    op.response = AccessBindingsOperationResult(effective_deltas=deltas)
    await operations.insert(conn, op)


async def _change_image_bindings(
    app: web.Application,
    context: RequestContext,
    image_id: str,
    compute: DeltaRule,
    metadata: Metadata,
    key: Claim | None,
) -> Operation:
    kind = operations.SET_ACCESS
    if isinstance(metadata, UpdateAccessBindingsMetadata):
        kind = operations.UPDATE_ACCESS
    now = now_us()
    async with app[DB].transaction() as conn:
        image = await authorization.image_or_none(
            conn, context, image_id, Permission.UPDATE_BINDINGS, lock=True
        )
        folder_id = image.folder_id if image else ""
        description = "Change image access bindings"
        op = new_operation(context, kind, image_id, folder_id, description, metadata, now)
        if previous := await replay(conn, key, op.id, now):
            return previous
        if image is None:
            raise authorization.missing_image(image_id)
        if image.status is ImageStatus.DELETING:
            raise FailedPrecondition(f"image {image_id} is being deleted")
        deltas = compute(await bindings.all_for(conn, image_id))
        await binding_rules.require_folder_admin_to_open_editing(conn, context, image, deltas)
        await _apply(conn, image_id, deltas, op)
        assert op.response is not None
        announced = [
            ("access_bindings_changed", op.id, op.response),
            image_events.operation_done(op),
        ]
        rows = await image_events.record(conn, [(image, announced)])
    transitions.count_started(op)
    await publish_committed(app, rows)
    return to_operation(op)


async def _change_folder_bindings(
    app: web.Application,
    context: RequestContext,
    folder_id: str,
    compute: DeltaRule,
    metadata: Metadata,
    key: Claim | None,
) -> Operation:
    """Like an image's, without events: those are about images."""
    kind = operations.SET_FOLDER_ACCESS
    if isinstance(metadata, UpdateAccessBindingsMetadata):
        kind = operations.UPDATE_FOLDER_ACCESS
    resource, now = authorization.folder_resource(folder_id), now_us()
    async with app[DB].transaction() as conn:
        await authorization.require_on_folder(conn, context, folder_id, Permission.UPDATE_BINDINGS)
        description = "Change folder access bindings"
        op = new_operation(context, kind, resource, folder_id, description, metadata, now)
        if previous := await replay(conn, key, op.id, now):
            return previous
        await bindings.lock(conn, resource)
        await _apply(conn, resource, compute(await bindings.all_for(conn, resource)), op)
    transitions.count_started(op)
    return to_operation(op)


ChangeBindings = Callable[..., Awaitable[Operation]]


async def _set(request: web.Request, change: ChangeBindings, rule: IdRule) -> web.Response:
    context = context_of(request)
    path = checked_path(request.match_info, resourceId=rule)
    parsed = await body_request(request, SetAccessBindingsRequest, path)
    wanted = {
        binding_rules.checked(binding, f"accessBindings[{index}]")
        for index, binding in enumerate(parsed.access_bindings)
    }
    operation = await change(
        request.app,
        context,
        parsed.resource_id,
        lambda current: _set_deltas(current, wanted),
        SetAccessBindingsMetadata(resource_id=parsed.resource_id),
        idempotency_claim(request, context, parsed),
    )
    return respond(operation)


async def _update(request: web.Request, change: ChangeBindings, rule: IdRule) -> web.Response:
    context = context_of(request)
    path = checked_path(request.match_info, resourceId=rule)
    parsed = await body_request(request, UpdateAccessBindingsRequest, path)
    _update_deltas(set(), parsed)  # validate every delta before touching the store
    operation = await change(
        request.app,
        context,
        parsed.resource_id,
        lambda current: _update_deltas(current, parsed),
        UpdateAccessBindingsMetadata(resource_id=parsed.resource_id),
        idempotency_claim(request, context, parsed),
    )
    return respond(operation)


@routes.post(IMAGE + ":setAccessBindings")
async def set_image_access_bindings(request: web.Request) -> web.Response:
    return await _set(request, _change_image_bindings, IMAGE_ID)


@routes.post(IMAGE + ":updateAccessBindings")
async def update_image_access_bindings(request: web.Request) -> web.Response:
    return await _update(request, _change_image_bindings, IMAGE_ID)


@routes.post(FOLDER + ":setAccessBindings")
async def set_folder_access_bindings(request: web.Request) -> web.Response:
    return await _set(request, _change_folder_bindings, FOLDER_ID)


@routes.post(FOLDER + ":updateAccessBindings")
async def update_folder_access_bindings(request: web.Request) -> web.Response:
    return await _update(request, _change_folder_bindings, FOLDER_ID)
