"""The format qemu would pick for a file opened without `-f`, from its first bytes.

A consumer of a stored image (`qemu-img convert`, a hypervisor) probes its format the way
qemu's block layer does: every driver's probe function scores the first 512 bytes (qemu's
BLOCK_PROBE_BUF_SIZE, zero-filled past the end of a shorter file) and the highest score wins,
raw (score 1) when none matches.

These are the probes of qemu's drivers that look at content (the dmg driver probes the file
name only), written after qemu's block/*.c. Kiln stores nothing that qemu would open as
anything other than what the inspector vouched for."""

import struct
from collections.abc import Callable

PROBE_BYTES = 512
_VERSION_LINES = tuple(f"version={n}{end}".encode() for n in "123" for end in ("\n", "\r\n"))
_CLOOP_MAGIC = (
    b"#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n"
)
_BOCHS = struct.Struct("<32s16s16sI")
_VMDK_MAGICS = (b"KDMV", b"COWD")  # sparse VMDK 4 and VMware 3


def probe(head: bytes | bytearray) -> str:
    """qemu's name for the format of a file that starts with `head` (raw when nothing matches)."""
    buf = _window(head)
    best, score = "raw", 1
    for name, scorer in _PROBES:
        found = scorer(buf)
        if found > score:
            best, score = name, found
    return best


def is_vmdk_descriptor(head: bytes | bytearray) -> bool:
    """True for the text form of VMDK: a descriptor whose extents are other files."""
    return head[:4] not in _VMDK_MAGICS and _vmdk(_window(head)) > 0


def _window(head: bytes | bytearray) -> bytes:
    return bytes(head[:PROBE_BYTES]).ljust(PROBE_BYTES, b"\0")


def _magic(magic: bytes, offset: int = 0) -> Callable[[bytes], int]:
    return lambda buf: 100 if buf[offset : offset + len(magic)] == magic else 0


def _qcow_version(wanted: Callable[[int], bool]) -> Callable[[bytes], int]:
    def score(buf: bytes) -> int:
        magic, version = struct.unpack_from(">4sI", buf)
        return 100 if magic == b"QFI\xfb" and wanted(version) else 0

    return score


def _bochs(buf: bytes) -> int:
    magic, kind, subtype, version = _BOCHS.unpack_from(buf)
    header = (_cstr(magic), _cstr(kind), _cstr(subtype))
    matches = header == (b"Bochs Virtual HD Image", b"Redolog", b"Growing")
    return 100 if matches and version in (0x00020000, 0x00010000) else 0


def _parallels(buf: bytes) -> int:
    magic, version = struct.unpack_from("<16sI", buf)
    return 100 if magic in (b"WithoutFreeSpace", b"WithouFreSpacExt") and version == 2 else 0


def _cloop(buf: bytes) -> int:
    return 2 if buf.startswith(_CLOOP_MAGIC) else 0


def _vmdk(buf: bytes) -> int:
    """Binary VMDK by its magic, or a text descriptor: comment and blank lines, then version=N."""
    if buf[:4] in _VMDK_MAGICS:
        return 100
    pos, end = 0, len(buf)
    while pos < end:
        if buf[pos : pos + 1] == b"#":  # a comment line, whatever bytes it holds
            newline = buf.find(b"\n", pos)
            pos = end if newline < 0 else newline + 1
        elif buf[pos : pos + 1] == b" ":  # only spaces (and \r) before its newline
            while pos < end and buf[pos : pos + 1] == b" ":
                pos += 1
            pos += buf[pos : pos + 1] == b"\r"
            if buf[pos : pos + 1] != b"\n":
                return 0
            pos += 1
        else:
            return 100 if buf.startswith(_VERSION_LINES, pos) else 0
    return 0


def _cstr(field: bytes) -> bytes:
    return field.partition(b"\0")[0]


# Their order does not matter: no two of them match the same bytes.
_PROBES: tuple[tuple[str, Callable[[bytes], int]], ...] = (
    ("bochs", _bochs),
    ("cloop", _cloop),
    ("luks", _magic(b"LUKS\xba\xbe")),
    ("parallels", _parallels),
    ("qcow", _qcow_version(lambda version: version == 1)),
    ("qcow2", _qcow_version(lambda version: version >= 2)),
    ("qed", _magic(b"QED\0")),
    ("vdi", _magic(struct.pack("<I", 0xBEDA107F), offset=64)),
    ("vhdx", _magic(b"vhdxfile")),
    ("vmdk", _vmdk),
    ("vpc", _magic(b"conectix")),
)
