"""What an access binding may say, and which grants an image admin may not make alone."""

from contracts.access import AccessBinding, AccessBindingDelta
from contracts.enums import AccessBindingAction
from contracts.errors import InvalidArgument, PermissionDenied
from gateway import authz
from gateway.authz import ROLE_PERMISSIONS, Permission
from gateway.context import RequestContext
from store import bindings
from store.bindings import BindingKey
from store.db import Connection
from store.images import ImageRecord

ROLES = frozenset(ROLE_PERMISSIONS)
SUBJECT_TYPES = frozenset({"userAccount", "serviceAccount", "federatedUser", authz.SYSTEM})
# The roles that include compute.editor: whoever holds one may update and delete the image.
EDITING_ROLES = frozenset(
    role for role, held in ROLE_PERMISSIONS.items() if ROLE_PERMISSIONS["compute.editor"] <= held
)


def checked(binding: AccessBinding, field: str) -> BindingKey:
    """The binding's key once its role and subject are ones Kiln knows; else 400 naming the
    field (a system subject Kiln does not know would be stored and never match anyone)."""
    subject = binding.subject
    if binding.role_id not in ROLES:
        raise InvalidArgument(f"{field}.roleId: unknown role {binding.role_id!r}")
    if subject.type not in SUBJECT_TYPES:
        raise InvalidArgument(f"{field}.subject.type: unknown type {subject.type!r}")
    if subject.type == authz.SYSTEM and subject.id not in authz.EVERYONE:
        known = " or ".join(authz.EVERYONE)
        raise InvalidArgument(f"{field}.subject.id: unknown system subject {subject.id!r}: {known}")
    return bindings.key(binding)


def _lets_everyone_edit(delta: AccessBindingDelta) -> bool:
    binding = delta.access_binding
    return (
        delta.action is AccessBindingAction.ADD
        and binding.subject.type == authz.SYSTEM
        and binding.role_id in EDITING_ROLES
    )


async def require_folder_admin_to_open_editing(
    conn: Connection, context: RequestContext, image: ImageRecord, deltas: list[AccessBindingDelta]
) -> None:
    """An editing role goes to everyone (a system subject) only from an admin of the image's
    folder: an admin of the image alone could otherwise let any caller delete it. 403."""
    opening = next((d.access_binding for d in deltas if _lets_everyone_edit(d)), None)
    if opening is None:
        return
    folder = (authz.folder_resource(image.folder_id),)
    if Permission.UPDATE_BINDINGS not in await authz.permissions(conn, context, folder):
        raise PermissionDenied(
            f"granting {opening.role_id} to system:{opening.subject.id} lets every caller edit"
            f" image {image.id}: permission {Permission.UPDATE_BINDINGS} is required on"
            f" folder {image.folder_id}"
        )
