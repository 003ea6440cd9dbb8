"""What an access binding may say, and which grants an image admin may not make alone."""

from api import authorization
from api.authorization import ROLE_PERMISSIONS, Permission
from api.context import RequestContext
from contracts.access import EVERYONE, SYSTEM, AccessBinding, AccessBindingDelta
from contracts.enums import AccessBindingAction
from contracts.errors import InvalidArgument, PermissionDenied
from store import bindings
from store.bindings import BindingKey
from store.db import Connection
from store.images import ImageRecord

# The roles that include compute.editor: whoever holds one may update and delete the image.
EDITING_ROLES = frozenset(
    role for role, held in ROLE_PERMISSIONS.items() if ROLE_PERMISSIONS["compute.editor"] <= held
)


def checked(binding: AccessBinding, field: str) -> BindingKey:
    """The binding's key once its subject is one Kiln knows (its role and subject type the
    contract's types check); else 400 naming the field (a system subject Kiln does not know
    would be stored and never match anyone)."""
    subject = binding.subject
    if subject.type == SYSTEM and subject.id not in EVERYONE:
        known = " or ".join(EVERYONE)
        raise InvalidArgument(f"{field}.subject.id: unknown system subject {subject.id!r}: {known}")
    return bindings.key(binding)


def _lets_everyone_edit(delta: AccessBindingDelta) -> bool:
    binding = delta.access_binding
    return (
        delta.action is AccessBindingAction.ADD
        and binding.subject.type == SYSTEM
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
    folder = (authorization.folder_resource(image.folder_id),)
    if Permission.UPDATE_BINDINGS not in await authorization.permissions(conn, context, folder):
        raise PermissionDenied(
            f"granting {opening.role_id} to system:{opening.subject.id} lets every caller edit"
            f" image {image.id}: permission {Permission.UPDATE_BINDINGS} is required on"
            f" folder {image.folder_id}"
        )
