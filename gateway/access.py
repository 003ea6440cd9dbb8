"""Access-binding methods of an image: list, set (replace all), update (ADD/REMOVE deltas)."""

import base64
from collections.abc import Callable

import msgspec
from aiohttp import web

from contracts.access import (
    AccessBinding,
    AccessBindingDelta,
    AccessBindingsOperationResult,
    ListAccessBindingsRequest,
    ListAccessBindingsResponse,
    SetAccessBindingsMetadata,
    SetAccessBindingsRequest,
    Subject,
    UpdateAccessBindingsMetadata,
    UpdateAccessBindingsRequest,
)
from contracts.enums import AccessBindingAction, ImageStatus
from contracts.errors import FailedPrecondition, InvalidArgument
from contracts.operations import Operation
from gateway.context import RequestContext, context_of
from gateway.http import body_request, query_request, respond
from gateway.keys import DB, PAGE_TOKENS
from gateway.metrics import operation_started
from gateway.pagination import page_size
from gateway.publishing import publish_committed
from gateway.writes import existing_image, idempotency_claim, new_operation, replay
from store import bindings, events, operations
from store.bindings import BindingKey
from store.clock import now_us
from store.idempotency import Claim
from store.operations import to_operation

routes = web.RouteTableDef()
ROLES = frozenset(
    {
        "viewer",
        "editor",
        "admin",
        "compute.viewer",
        "compute.editor",
        "compute.admin",
        "compute.images.user",
        "compute.auditor",
    }
)
SUBJECT_TYPES = frozenset({"userAccount", "serviceAccount", "federatedUser", "system"})
_position_codec = msgspec.json.Decoder(tuple[str, str, str])


def _checked(binding: AccessBinding, field: str) -> BindingKey:
    if binding.role_id not in ROLES:
        raise InvalidArgument(f"{field}.roleId: unknown role {binding.role_id!r}")
    if binding.subject.type not in SUBJECT_TYPES:
        raise InvalidArgument(f"{field}.subject.type: unknown type {binding.subject.type!r}")
    return bindings.key(binding)


def _binding(key: BindingKey) -> AccessBinding:
    return AccessBinding(role_id=key[0], subject=Subject(type=key[1], id=key[2]))


def _delta(action: AccessBindingAction, key: BindingKey) -> AccessBindingDelta:
    return AccessBindingDelta(action=action, access_binding=_binding(key))


def _encode_position(key: BindingKey) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(key)).decode()


def _decode_position(text: str) -> BindingKey:
    try:
        return _position_codec.decode(base64.urlsafe_b64decode(text))
    except (ValueError, msgspec.DecodeError):
        raise InvalidArgument("pageToken: malformed") from None


@routes.get("/compute/v1/images/{resourceId:[^/:]+}:listAccessBindings")
async def list_access_bindings(request: web.Request) -> web.Response:
    parsed = query_request(request, ListAccessBindingsRequest, dict(request.match_info))
    scope = f"bindings\n{parsed.resource_id}"
    tokens, limit = request.app[PAGE_TOKENS], page_size(parsed.page_size)
    after = _decode_position(tokens.open(scope, parsed.page_token)) if parsed.page_token else None
    async with request.app[DB].transaction() as conn:
        await existing_image(conn, parsed.resource_id)
        rows = await bindings.page(conn, parsed.resource_id, after, limit + 1)
    more = len(rows) > limit
    token = tokens.issue(scope, _encode_position(bindings.key(rows[limit - 1]))) if more else ""
    return respond(ListAccessBindingsResponse(access_bindings=rows[:limit], next_page_token=token))


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
        key = _checked(delta.access_binding, f"{field}.accessBinding")
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


async def _change_bindings(
    app: web.Application,
    context: RequestContext,
    resource_id: str,
    compute: DeltaRule,
    metadata: SetAccessBindingsMetadata | UpdateAccessBindingsMetadata,
    key: Claim | None,
) -> Operation:
    kind = operations.SET_ACCESS
    if isinstance(metadata, UpdateAccessBindingsMetadata):
        kind = operations.UPDATE_ACCESS
    now = now_us()
    async with app[DB].transaction() as conn:
        op = new_operation(
            context, kind, resource_id, "Change image access bindings", metadata, now
        )
        if previous := await replay(conn, key, op.id, now):
            return previous
        image = await existing_image(conn, resource_id, lock=True)
        if image.status is ImageStatus.DELETING:
            raise FailedPrecondition(f"image {resource_id} is being deleted")
        deltas = compute(await bindings.all_for(conn, resource_id))
        for delta in deltas:
            change = bindings.add if delta.action is AccessBindingAction.ADD else bindings.remove
            await change(conn, resource_id, bindings.key(delta.access_binding))
        op.done = True
        op.response = AccessBindingsOperationResult(effective_deltas=deltas)
        await operations.insert(conn, op)
        rows = [
            await events.record(conn, image, "access_bindings_changed", op.id, op.response),
            await events.operation_done(conn, image, op),
        ]
    operation_started(op)
    await publish_committed(app, rows)
    return to_operation(op)


@routes.post("/compute/v1/images/{resourceId:[^/:]+}:setAccessBindings")
async def set_access_bindings(request: web.Request) -> web.Response:
    context = context_of(request)
    parsed = await body_request(request, SetAccessBindingsRequest, dict(request.match_info))
    wanted = {
        _checked(binding, f"accessBindings[{index}]")
        for index, binding in enumerate(parsed.access_bindings)
    }
    operation = await _change_bindings(
        request.app,
        context,
        parsed.resource_id,
        lambda current: _set_deltas(current, wanted),
        SetAccessBindingsMetadata(resource_id=parsed.resource_id),
        idempotency_claim(request, context, parsed),
    )
    return respond(operation)


@routes.post("/compute/v1/images/{resourceId:[^/:]+}:updateAccessBindings")
async def update_access_bindings(request: web.Request) -> web.Response:
    context = context_of(request)
    parsed = await body_request(request, UpdateAccessBindingsRequest, dict(request.match_info))
    _update_deltas(set(), parsed)  # validate every delta before touching the store
    operation = await _change_bindings(
        request.app,
        context,
        parsed.resource_id,
        lambda current: _update_deltas(current, parsed),
        UpdateAccessBindingsMetadata(resource_id=parsed.resource_id),
        idempotency_claim(request, context, parsed),
    )
    return respond(operation)
