"""The changes a worker asks of an image's lifecycle (lifecycle/transitions.py carries them
out), and what they carry: a lease to take, an import's result."""

import msgspec

from store.images import ImageSpec


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


Change = StartImport | ImportDone | OperationFailed | CancelImport | ReleaseImage
