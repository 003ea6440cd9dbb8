"""The changes the gateway and the workers ask of an image's lifecycle (lifecycle/transitions.py
carries them out), and what they carry: a lease to take, an import's result."""

import msgspec

from store.images import ImageSpec
from store.operations import OperationRecord


class Lease(msgspec.Struct, frozen=True, kw_only=True):
    """A lease to take: `owner` holds `operation_id` for `length_us` microseconds, unless
    another worker's lease is still live."""

    operation_id: str
    owner: str
    length_us: int


class Imported(msgspec.Struct, frozen=True, kw_only=True):
    """What an import produced: the image's bytes, sizes and, for a copy, what it inherits."""

    digest: str
    size: int
    storage_size: int
    requested_min_disk_size: int = 0
    copied_from: str = ""
    inherit: ImageSpec | None = None


class StartImport(msgspec.Struct, frozen=True, kw_only=True):
    """Lease the create's operation and announce that its import starts."""

    image_id: str
    lease: Lease

    @property
    def operation_id(self) -> str:
        return self.lease.operation_id


class ImportDone(msgspec.Struct, frozen=True, kw_only=True):
    """End the create READY with the bytes it imported."""

    operation_id: str
    image_id: str
    result: Imported


class OperationFailed(msgspec.Struct, frozen=True, kw_only=True):
    """End a create or a delete with an error, the image in ERROR."""

    operation_id: str
    image_id: str
    code: int
    message: str


class CancelImport(msgspec.Struct, frozen=True, kw_only=True):
    """End a create as CANCELLED. `digest` names bytes the cancelled import stored, released
    if no image uses them."""

    operation_id: str
    image_id: str
    digest: str = ""


class ReleaseImage(msgspec.Struct, frozen=True, kw_only=True):
    """Remove a DELETING image and end its delete."""

    operation_id: str
    image_id: str


class AcceptDelete(msgspec.Struct, frozen=True, kw_only=True):
    """Start deleting an image: it goes DELETING, an open create is asked to stop, and the
    delete's operation (new, not yet stored) and command are written."""

    operation: OperationRecord

    @property
    def image_id(self) -> str:
        return self.operation.resource_id

    @property
    def operation_id(self) -> str:
        return self.operation.id


class RequestCancel(msgspec.Struct, frozen=True, kw_only=True):
    """Ask an open create to stop: a worker that may be running it is sent a notice, and one
    that no worker holds ends here, CANCELLED."""

    operation_id: str
    image_id: str
    request_id: str


Change = (
    AcceptDelete
    | RequestCancel
    | StartImport
    | ImportDone
    | OperationFailed
    | CancelImport
    | ReleaseImage
)
