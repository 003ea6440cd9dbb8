"""An operator's disk sources: the files a create from a disk or a snapshot reads, below one
directory, `<folderId>/disks/<diskId>` and `<folderId>/snapshots/<snapshotId>`."""

import re
from pathlib import Path
from typing import Literal, Protocol

import msgspec
import structlog

from contracts.errors import Code
from worker.errors import ImportRefused

log = structlog.get_logger(__name__)

DiskKind = Literal["disk", "snapshot"]
_ID_FIELDS: dict[DiskKind, str] = {"disk": "diskId", "snapshot": "snapshotId"}
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,49}")


class ResolvedSource(msgspec.Struct, frozen=True, kw_only=True):
    """A URL to import from; a `file://` URL is allowed below `import_root`."""

    url: str
    import_root: Path | None = None


class DiskSource(Protocol):
    """Resolves a diskId or snapshotId of a folder to something the import pipeline can read."""

    async def resolve(self, folder_id: str, kind: DiskKind, source_id: str) -> ResolvedSource:
        """Raises ImportRefused when the folder has no such disk or snapshot."""
        ...


class DirectoryDiskSource:
    """A folder's disks are the files `<root>/<folderId>/disks/<diskId>`, its snapshots
    `<root>/<folderId>/snapshots/<snapshotId>`: a create reads only its own folder's."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    async def resolve(self, folder_id: str, kind: DiskKind, source_id: str) -> ResolvedSource:
        _check_path_part("folderId", folder_id)
        _check_path_part(_ID_FIELDS[kind], source_id)
        directory = self.root / folder_id / f"{kind}s"
        path = directory / source_id
        if not path.is_file():
            # Whether another folder has one by that id is not the caller's business.
            raise ImportRefused(
                Code.NOT_FOUND, f"{kind} {source_id} not found in folder {folder_id}"
            )
        return ResolvedSource(url=path.as_uri(), import_root=directory)


def _check_path_part(field: str, value: str) -> None:
    """An id that names one file in one directory: no separators, no `..`."""
    if not _SAFE_ID.fullmatch(value) or ".." in value:
        raise ImportRefused(
            Code.INVALID_ARGUMENT,
            f"{field} {value!r} is malformed: 1 to 50 letters, digits, '.', '_' or '-',"
            " starting with a letter or digit, without '..'",
        )
