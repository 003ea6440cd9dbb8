"""Streaming disk image inspection with oslo.utils' format_inspector.

Every chunk goes to one inspector per format the library knows, so a file that also looks
like another format is caught, and the safety check runs on what was detected, not on what
the uploader claimed."""

import contextlib
import re
import struct
from collections.abc import Iterator

import msgspec
import structlog
from oslo_utils.imageutils import format_inspector as fi

from contracts.base import MAX_DISK_SIZE
from contracts.errors import Code
from worker.errors import ImportRefused
from worker.importing import qemu_probe

log = structlog.get_logger(__name__)

ACCEPTED = ("qcow2", "vmdk", "raw")
# A raw disk that carries an MBR or GPT partition table is detected as "gpt".
_RAW_LIKE = frozenset({"raw", "gpt"})
SECTOR = 512
# qcow2 header fields the library leaves unchecked: cluster_bits, l1_size, l1_table_offset,
# refcount_table_offset, refcount_table_clusters.
_QCOW2_LAYOUT = struct.Struct(">20xI12xIQQI")
_PHRASES = {
    "backing_file": "has a backing file",
    "data_file": "has an external data file",
}


class Inspection(msgspec.Struct, frozen=True, kw_only=True):
    format: str
    virtual_size: int


class StreamInspector:
    """Call `feed` with every chunk in order, then `finish` once at the end of the stream."""

    def __init__(self) -> None:
        self._inspectors = [kind() for kind in fi.ALL_FORMATS.values()]
        self._failed: dict[str, Exception] = {}
        self._head = bytearray()
        self._size = 0
        self._decided = False

    def feed(self, chunk: bytes) -> None:
        """Inspect one chunk; refuse early once the headers alone condemn the image."""
        with _refusing_crashes():
            self._feed(chunk)

    def finish(self) -> Inspection:
        """Decide the format and run every check; raises ImportRefused."""
        with _refusing_crashes():
            return self._finish()

    def _feed(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if len(self._head) < qemu_probe.PROBE_BYTES:
            self._head += chunk[: qemu_probe.PROBE_BYTES - len(self._head)]
        for inspector in self._inspectors:
            if inspector.NAME not in self._failed:
                self._eat(inspector, chunk)
        if not self._decided and self._can_decide():
            self._decided = True
            found = self._detect()
            if found.NAME not in _RAW_LIKE:
                self._check(found)
                _check_virtual_size(found.virtual_size)

    def _can_decide(self) -> bool:
        """Every header is read, qemu's probe window too."""
        head_read = len(self._head) == qemu_probe.PROBE_BYTES
        return head_read and all(i.complete for i in self._inspectors)

    def _finish(self) -> Inspection:
        for inspector in self._inspectors:
            inspector.finish()
        if self._size == 0:
            raise ImportRefused(Code.INVALID_ARGUMENT, "image is empty")
        found = self._detect()
        self._check(found)
        if found.NAME in _RAW_LIKE:
            return self._raw()
        if found.NAME == "qcow2":
            self._check_qcow2_layout(found)
        _check_virtual_size(found.virtual_size)
        return Inspection(format=found.NAME, virtual_size=found.virtual_size)

    def _eat(self, inspector: fi.FileInspector, chunk: bytes) -> None:
        try:
            inspector.eat_chunk(chunk)
        except Exception as exc:  # the parsers raise anything on foreign data
            self._failed[inspector.NAME] = exc

    def _detect(self) -> fi.FileInspector:
        matches = [i for i in self._inspectors if i.NAME != "raw" and _matches(i)]
        if len(matches) > 1:
            names = ", ".join(sorted(i.NAME for i in matches))
            raise ImportRefused(
                Code.INVALID_ARGUMENT, f"image matches more than one format: {names}"
            )
        if matches:
            return matches[0]
        return next(i for i in self._inspectors if i.NAME == "raw")

    def _check(self, found: fi.FileInspector) -> None:
        """Refuse a corrupt or unaccepted format, one that qemu would open as something else,
        then whatever the inspector's safety checks condemn."""
        name = found.NAME
        if name in self._failed:
            raise _corrupt(name, self._failed[name])
        if name not in ACCEPTED and name not in _RAW_LIKE:
            raise _not_accepted(name)
        self._check_as_qemu_sees_it(name)
        try:
            found.safety_check()
        except fi.SafetyCheckFailed as exc:
            raise ImportRefused(Code.INVALID_ARGUMENT, _describe(found, exc)) from exc
        except fi.ImageFormatError as exc:
            raise _corrupt(name, exc) from exc
        if isinstance(found, fi.VMDKInspector):
            _check_vmdk_parent(found)

    def _check_as_qemu_sees_it(self, detected: str) -> None:
        """A consumer opening the blob without `-f` gets qemu's probe, whatever Kiln detected."""
        if qemu_probe.is_vmdk_descriptor(self._head):
            raise ImportRefused(
                Code.INVALID_ARGUMENT,
                "image is a VMDK text descriptor: its data would be read from other files",
            )
        qemu = qemu_probe.probe(self._head)
        if qemu not in ACCEPTED:
            raise _not_accepted(qemu)
        if qemu != ("raw" if detected in _RAW_LIKE else detected):
            raise ImportRefused(
                Code.INVALID_ARGUMENT, f"image would be opened by qemu as {qemu}, not {detected}"
            )

    def _check_qcow2_layout(self, found: fi.FileInspector) -> None:
        """Refuse a qcow2 whose tables lie beyond the end of the stream: truncated or corrupt."""
        layout = _QCOW2_LAYOUT.unpack_from(found.region("header").data)
        cluster_bits, l1_size, l1_offset, refcount_offset, refcount_clusters = layout
        if not 9 <= cluster_bits <= 21:
            raise _corrupt("qcow2", f"cluster_bits is {cluster_bits}")
        end = max(l1_offset + 8 * l1_size, refcount_offset + (refcount_clusters << cluster_bits))
        if end > self._size:
            raise ImportRefused(
                Code.INVALID_ARGUMENT,
                f"qcow2 image is truncated: its tables end at byte {end} of {self._size}",
            )

    def _raw(self) -> Inspection:
        if self._size % SECTOR:
            raise ImportRefused(
                Code.INVALID_ARGUMENT,
                f"raw image of {self._size} bytes is not a whole number of {SECTOR}-byte sectors",
            )
        if _is_text(self._head[:SECTOR]):
            raise ImportRefused(
                Code.INVALID_ARGUMENT,
                f"raw image's first {SECTOR} bytes are printable text, not a disk image",
            )
        return Inspection(format="raw", virtual_size=self._size)


@contextlib.contextmanager
def _refusing_crashes() -> Iterator[None]:
    """The parsers read hostile bytes: whatever they raise refuses the image, never retries."""
    try:
        yield
    except ImportRefused:
        raise
    except Exception as exc:
        log.warning("image.inspection_crashed", error=repr(exc))
        raise ImportRefused(
            Code.INVALID_ARGUMENT, f"image could not be inspected: {type(exc).__name__}: {exc}"
        ) from exc


def _check_vmdk_parent(found: fi.VMDKInspector) -> None:
    """A sparse VMDK naming a parent makes qemu open that file, as a qcow2 backing file does.

    qemu looks for these keys anywhere in the text it reads from the descriptor sector up to
    the first NUL byte, so the descriptor must end inside its own sectors."""
    region = found.region("descriptor").data
    if b"\0" not in region:
        raise _corrupt("vmdk", "its descriptor does not end within its sectors")
    text = found.desc_text or ""
    if "parentfilenamehint" in text:
        raise ImportRefused(Code.INVALID_ARGUMENT, "vmdk image has a parent (parentFileNameHint)")
    parents = re.findall(r"parentcid\s*=\s*(\S*)", text)
    if any(cid != "ffffffff" for cid in parents):
        raise ImportRefused(Code.INVALID_ARGUMENT, "vmdk image has a parent (parentCID)")


def _is_text(data: bytes | bytearray) -> bool:
    return all(32 <= byte < 127 or byte in b"\t\n\r\x0b\x0c" for byte in data)


def _matches(inspector: fi.FileInspector) -> bool:
    try:
        return inspector.format_match
    except Exception:  # a half-parsed header of a foreign format
        return False


def _not_accepted(name: str) -> ImportRefused:
    return ImportRefused(
        Code.FAILED_PRECONDITION,
        f"image format {name} is not accepted (accepted: {', '.join(ACCEPTED)})",
    )


def _corrupt(name: str, reason: Exception | str) -> ImportRefused:
    return ImportRefused(Code.INVALID_ARGUMENT, f"{name} image has a corrupt header: {reason}")


def _describe(found: fi.FileInspector, failed: fi.SafetyCheckFailed) -> str:
    """One message naming every failed check, e.g. "qcow2 image has a backing file"."""
    reasons = [
        _PHRASES.get(check) or f"fails the {check} check: {exc}"
        for check, exc in failed.failures.items()
    ]
    subformat = getattr(found, "vmdktype", None)
    suffix = f" (createType {subformat})" if subformat else ""
    log.info("image.refused", format=found.NAME, checks=sorted(failed.failures))
    return f"{found.NAME} image {'; '.join(reasons)}{suffix}"


def _check_virtual_size(size: int) -> None:
    """A header may claim any size; no disk made from the image could exceed the maximum."""
    if size > MAX_DISK_SIZE:
        raise ImportRefused(
            Code.INVALID_ARGUMENT,
            f"image claims a virtual size of {size} bytes, above the {MAX_DISK_SIZE}-byte"
            " (4 TiB) maximum disk size",
        )
