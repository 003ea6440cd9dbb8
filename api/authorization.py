"""Authorization: the roles of spec §9 as permission sets, and the checks every method makes.

A caller's roles on an image are those bound to it on the image or on its folder (folder
bindings live in the same table under `folder/<folderId>`), for its own subject id or the
system subjects `allAuthenticatedUsers` / `allUsers`; KILN_ADMINS are admins everywhere.
Each check is one lookup of an index of that table. An image on which the caller holds no role
at all answers exactly like a missing one (404); a role without the permission, 403.
"""

import enum
import functools
from typing import get_args

from api.context import RequestContext
from contracts.access import EVERYONE, SYSTEM, AccessBindingsOperationResult, RoleId
from contracts.errors import NotFound, PermissionDenied
from contracts.operations import Operation
from store import bindings, images
from store.db import Connection
from store.images import ImageRecord
from store.operations import OperationRecord, to_operation


class Permission(enum.StrEnum):
    USE = "compute.images.use"  # as the source of a new image
    GET = "compute.images.get"  # get, its operations
    LIST = "compute.images.list"  # list a folder's images, follow its events
    LATEST = "compute.images.getLatestByFamily"
    CREATE = "compute.images.create"
    UPDATE = "compute.images.update"
    DELETE = "compute.images.delete"
    LIST_BINDINGS = "iam.accessBindings.list"
    UPDATE_BINDINGS = "iam.accessBindings.update"
    CANCEL = "compute.operations.cancel"


P = Permission
# role: (roles it includes, permissions of its own), as spec §9 documents them.
ROLES: dict[str, tuple[tuple[str, ...], frozenset[Permission]]] = {
    "compute.images.user": ((), frozenset({P.USE, P.LATEST})),
    "compute.auditor": ((), frozenset({P.GET, P.LIST})),
    "compute.viewer": (("compute.auditor",), frozenset({P.LATEST, P.LIST_BINDINGS})),
    "compute.editor": (
        ("compute.viewer", "compute.images.user"),
        frozenset({P.CREATE, P.UPDATE, P.DELETE}),
    ),
    "compute.admin": (("compute.editor",), frozenset({P.UPDATE_BINDINGS, P.CANCEL})),
    "viewer": (("compute.viewer",), frozenset()),
    "editor": (("viewer", "compute.editor"), frozenset()),
    "admin": (("editor", "compute.admin"), frozenset()),
}


def _closure(role: str) -> frozenset[Permission]:
    included, own = ROLES[role]
    return own.union(*(_closure(other) for other in included))


ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {role: _closure(role) for role in ROLES}
assert set(ROLES) == set(get_args(RoleId)), "the contract's role ids are the roles defined here"
EVERYTHING = frozenset(Permission)


def folder_resource(folder_id: str) -> str:
    """Where a folder's bindings live: never an image id (those have no '/')."""
    return f"folder/{folder_id}"


@functools.cache
def roles_with(permission: Permission) -> tuple[str, ...]:
    return tuple(sorted(role for role, held in ROLE_PERMISSIONS.items() if permission in held))


def missing_image(image_id: str) -> NotFound:
    return NotFound(f"image {image_id} not found")


def missing_operation(operation_id: str) -> NotFound:
    return NotFound(f"operation {operation_id} not found")


def _applies(kind: str, subject: str, context: RequestContext) -> bool:
    if kind == SYSTEM:
        return subject in EVERYONE
    return subject == context.subject


async def permissions(
    conn: Connection, context: RequestContext, resources: tuple[str, ...]
) -> frozenset[Permission]:
    """What the caller may do on the union of `resources` (an image and its folder, say)."""
    if context.admin:
        return EVERYTHING
    grants = await bindings.grants(conn, resources, (context.subject, *EVERYONE))
    roles = {role for role, kind, subject in grants if _applies(kind, subject, context)}
    return frozenset().union(*(ROLE_PERMISSIONS.get(role, frozenset()) for role in roles))


async def require_on_folder(
    conn: Connection, context: RequestContext, folder_id: str, permission: Permission
) -> None:
    if permission not in await permissions(conn, context, (folder_resource(folder_id),)):
        raise PermissionDenied(f"permission {permission} is required on folder {folder_id}")


async def require_on_image(
    conn: Connection, context: RequestContext, image: ImageRecord, *wanted: Permission
) -> None:
    """One of `wanted` on the image or its folder; with no role at all the image is hidden."""
    held = await permissions(conn, context, (image.id, folder_resource(image.folder_id)))
    if held.isdisjoint(wanted):
        if not held:
            raise missing_image(image.id)
        raise PermissionDenied(f"permission {wanted[0]} is required on image {image.id}")


async def image_or_none(
    conn: Connection,
    context: RequestContext,
    image_id: str,
    *wanted: Permission,
    lock: bool = False,
) -> ImageRecord | None:
    """The image if the caller may act on it; None if there is no such image."""
    if lock:
        record = (await images.get_locked(conn, [image_id])).get(image_id)
    else:
        record = await images.get(conn, image_id)
    if record is not None:
        await require_on_image(conn, context, record, *wanted)
    return record


async def image(
    conn: Connection,
    context: RequestContext,
    image_id: str,
    *wanted: Permission,
    lock: bool = False,
) -> ImageRecord:
    record = await image_or_none(conn, context, image_id, *wanted, lock=lock)
    if record is None:
        raise missing_image(image_id)
    return record


def _operation_resources(record: OperationRecord) -> tuple[str, ...]:
    if record.resource_id.startswith("folder/") or not record.folder_id:
        return (record.resource_id,)
    return (record.resource_id, folder_resource(record.folder_id))


async def may(
    conn: Connection, context: RequestContext, record: OperationRecord, permission: Permission
) -> bool:
    """Whether `require_on_operation` would let the caller through."""
    try:
        await require_on_operation(conn, context, record, permission)
    except (NotFound, PermissionDenied):
        return False
    return True


async def require_on_operation(
    conn: Connection, context: RequestContext, record: OperationRecord, permission: Permission
) -> None:
    """`permission` on the operation's resource (the image, or its folder once the image is
    gone). Whoever started an operation may read it; anyone else without a role is told the
    operation does not exist."""
    creator = record.created_by == context.subject
    if permission is Permission.GET and creator:
        return
    held = await permissions(conn, context, _operation_resources(record))
    if permission in held:
        return
    if not held and not creator:
        raise missing_operation(record.id)
    raise PermissionDenied(f"permission {permission} is required on {record.resource_id}")


async def shown_operations(
    conn: Connection, context: RequestContext, records: list[OperationRecord]
) -> list[Operation]:
    """The operations as the caller may see them: the effective deltas of a binding change
    only to whoever may list those bindings (of the image, or of the folder); anyone else
    gets its result without them."""
    may_list: dict[tuple[str, ...], bool] = {}
    shown = []
    for record in records:
        operation = to_operation(record)
        if isinstance(operation.response, AccessBindingsOperationResult):
            resources = _operation_resources(record)
            if resources not in may_list:
                held = await permissions(conn, context, resources)
                may_list[resources] = Permission.LIST_BINDINGS in held
            if not may_list[resources]:
                operation.response = AccessBindingsOperationResult()
        shown.append(operation)
    return shown


async def latest_ready(
    conn: Connection, context: RequestContext, folder_id: str, family: str
) -> ImageRecord | None:
    """The newest READY image of the family the caller may use: any, with the permission on
    the folder; else the newest of those it holds the permission on by an image binding."""
    if Permission.LATEST in await permissions(conn, context, (folder_resource(folder_id),)):
        return await images.latest_ready(conn, folder_id, family)
    found = await images.latest_ready_granted(
        conn, folder_id, family, context.subject, EVERYONE, roles_with(Permission.LATEST)
    )
    if found is None:
        raise PermissionDenied(
            f"permission {Permission.LATEST} is required on folder {folder_id}"
            f" or on an image of family {family!r} in it"
        )
    return found
