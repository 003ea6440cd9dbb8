"""Access-binding methods of an image and of a folder: list, set (replace all), update
(ADD/REMOVE deltas). A folder's bindings apply to every image in it; they are stored under
`folder/<folderId>`, which no image id can be."""

import base64
from collections.abc import Callable
from typing import cast

import msgspec

from api import authorization, binding_rules
from api.authorization import Permission
from api.context import RequestContext
from api.mutating_calls import Answer, change_image, count_started, new_operation, replay
from api.pagination import PageTokens, page_size
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
from contracts.enums import AccessBindingAction
from contracts.errors import InvalidArgument
from contracts.operations import Operation
from runtime.clock import now_us
from store import bindings, image_events, operations
from store.bindings import BindingKey
from store.db import Connection, Database
from store.idempotency import Claim
from store.operations import OperationRecord, to_operation


async def list_image_bindings(
    context: RequestContext, request: ListAccessBindingsRequest, db: Database, tokens: PageTokens
) -> ListAccessBindingsResponse:
    async with db.reading() as conn:
        await authorization.image(conn, context, request.resource_id, Permission.LIST_BINDINGS)
        return await _list_page(conn, tokens, request.resource_id, request)


async def list_folder_bindings(
    context: RequestContext, request: ListAccessBindingsRequest, db: Database, tokens: PageTokens
) -> ListAccessBindingsResponse:
    folder_id = request.resource_id
    async with db.reading() as conn:
        await authorization.require_on_folder(conn, context, folder_id, Permission.LIST_BINDINGS)
        return await _list_page(conn, tokens, authorization.folder_resource(folder_id), request)


async def set_image_bindings(
    context: RequestContext, request: SetAccessBindingsRequest, db: Database, key: Claim | None
) -> Answer:
    return await _change_image_bindings(db, context, request.resource_id, *_set(request), key)


async def update_image_bindings(
    context: RequestContext, request: UpdateAccessBindingsRequest, db: Database, key: Claim | None
) -> Answer:
    return await _change_image_bindings(db, context, request.resource_id, *_update(request), key)


async def set_folder_bindings(
    context: RequestContext, request: SetAccessBindingsRequest, db: Database, key: Claim | None
) -> Answer:
    return await _change_folder_bindings(db, context, request.resource_id, *_set(request), key)


async def update_folder_bindings(
    context: RequestContext, request: UpdateAccessBindingsRequest, db: Database, key: Claim | None
) -> Answer:
    return await _change_folder_bindings(db, context, request.resource_id, *_update(request), key)


def _set(request: SetAccessBindingsRequest) -> tuple["DeltaRule", SetAccessBindingsMetadata]:
    """How a set changes the stored bindings, checked before the store is touched."""
    wanted = {
        binding_rules.checked(binding, f"accessBindings[{index}]")
        for index, binding in enumerate(request.access_bindings)
    }
    metadata = SetAccessBindingsMetadata(resource_id=request.resource_id)
    return (lambda current: _set_deltas(current, wanted)), metadata


def _update(
    request: UpdateAccessBindingsRequest,
) -> tuple["DeltaRule", UpdateAccessBindingsMetadata]:
    """How an update changes the stored bindings; every delta validated first."""
    _update_deltas(set(), request)
    metadata = UpdateAccessBindingsMetadata(resource_id=request.resource_id)
    return (lambda current: _update_deltas(current, request)), metadata


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
    conn: Connection, tokens: PageTokens, key: str, parsed: ListAccessBindingsRequest
) -> ListAccessBindingsResponse:
    """A page of the bindings stored under `key` (an image id or a folder's key)."""
    scope = f"bindings\n{key}"
    limit = page_size(parsed.page_size)
    after = _decode_position(tokens.open(scope, parsed.page_token)) if parsed.page_token else None
    rows = await bindings.page(conn, key, after, limit + 1)
    more = len(rows) > limit
    token = tokens.issue(scope, _encode_position(bindings.key(rows[limit - 1]))) if more else ""
    return ListAccessBindingsResponse(access_bindings=rows[:limit], next_page_token=token)


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
    db: Database,
    context: RequestContext,
    image_id: str,
    compute: DeltaRule,
    metadata: Metadata,
    key: Claim | None,
) -> Answer:
    kind = operations.SET_ACCESS
    if isinstance(metadata, UpdateAccessBindingsMetadata):
        kind = operations.UPDATE_ACCESS
    now = now_us()

    def new_op(folder_id: str) -> OperationRecord:
        description = "Change image access bindings"
        return new_operation(context, kind, image_id, folder_id, description, metadata, now)

    async with db.transaction() as conn:
        permission = Permission.UPDATE_BINDINGS
        change = await change_image(conn, context, image_id, permission, new_op, key, now)
        if isinstance(change, Operation):
            return Answer(change, [])
        image, op = change
        deltas = compute(await bindings.all_for(conn, image_id))
        await binding_rules.require_folder_admin_to_open_editing(conn, context, image, deltas)
        await _apply(conn, image_id, deltas, op)
        assert op.response is not None
        announced = [
            ("access_bindings_changed", op.id, op.response),
            image_events.operation_done(op),
        ]
        rows = await image_events.record(conn, [(image, announced)])
    count_started(op)
    return Answer(to_operation(op), rows)


async def _change_folder_bindings(
    db: Database,
    context: RequestContext,
    folder_id: str,
    compute: DeltaRule,
    metadata: Metadata,
    key: Claim | None,
) -> Answer:
    """Like an image's, without events: those are about images."""
    kind = operations.SET_FOLDER_ACCESS
    if isinstance(metadata, UpdateAccessBindingsMetadata):
        kind = operations.UPDATE_FOLDER_ACCESS
    resource, now = authorization.folder_resource(folder_id), now_us()
    async with db.transaction() as conn:
        await authorization.require_on_folder(conn, context, folder_id, Permission.UPDATE_BINDINGS)
        description = "Change folder access bindings"
        op = new_operation(context, kind, resource, folder_id, description, metadata, now)
        if previous := await replay(conn, key, op.id, now):
            return Answer(previous, [])
        await bindings.lock(conn, resource)
        await _apply(conn, resource, compute(await bindings.all_for(conn, resource)), op)
    count_started(op)
    return Answer(to_operation(op), [])
