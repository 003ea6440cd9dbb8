"""Images that make qemu read files outside themselves, and qemu's own account of each.

Each builder writes a file with qemu-img or by patching one qemu-img made; `external_references`
asks `qemu-img info` what else the file would make qemu open, so a test can show that the
attack it refuses is real."""

import json
import os
import struct
import subprocess
from pathlib import Path

from support.images import qemu_img

SECTOR = 512
# A VMDK sparse header: magic, version, flags, capacity, grain size, descriptor offset and size.
_VMDK_DESCRIPTOR_SIZE_AT = 36


def qemu_info(path: Path) -> dict:
    """`qemu-img info` of a file, its format probed by qemu as a consumer would."""
    done = subprocess.run(
        ["qemu-img", "info", "-U", "--output=json", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    info: dict = json.loads(done.stdout)
    return info


def external_references(path: Path) -> list[str]:
    """Every file other than `path` itself that qemu would open for it."""
    info = qemu_info(path)
    found = [info["backing-filename"]] if "backing-filename" in info else []
    data = info.get("format-specific", {}).get("data", {})
    if "data-file" in data:
        found.append(data["data-file"])
    extents = [extent["filename"] for extent in data.get("extents", [])]
    return found + [name for name in extents if Path(name).resolve() != path.resolve()]


def flat_descriptor(path: Path, extent: Path, *, padded: bool = False) -> Path:
    """A monolithicFlat VMDK descriptor whose one extent is `extent` (an absolute path).

    `padded`: a comment line of NUL bytes fills it to one whole sector, so that it is not text
    throughout, yet qemu still probes it as a VMDK and reads the extent."""
    sectors = max(1, extent.stat().st_size // SECTOR)
    text = (
        "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n"
        f'createType="monolithicFlat"\nRW {sectors} FLAT "{extent}" 0\n'
    ).encode()
    if padded:
        text += b"#" + bytes(SECTOR - len(text) - 2) + b"\n"
    path.write_bytes(text)
    return path


def vmdk_with_parent(path: Path, parent: Path) -> Path:
    """A monolithicSparse VMDK whose embedded descriptor names `parent` (by a relative path)."""
    hint = os.path.relpath(parent, path.parent)
    qemu_img("create", "-f", "vmdk", "-b", hint, "-F", "vmdk", str(path))
    return path


def vmdk_with_parent_cid(path: Path) -> Path:
    """A monolithicSparse VMDK whose descriptor claims a parent by CID alone."""
    qemu_img("create", "-f", "vmdk", str(path), "4M")
    data = path.read_bytes()
    path.write_bytes(data.replace(b"parentCID=ffffffff", b"parentCID=1234abcd"))
    return path


def vmdk_with_overlong_descriptor(path: Path, parent_hint: str) -> Path:
    """A sparse VMDK whose header gives its descriptor one sector, which it fills without a NUL:
    qemu reads on past it, into a parentFileNameHint an inspector of that sector alone misses."""
    qemu_img("create", "-f", "vmdk", str(path), "4M")
    data = bytearray(path.read_bytes())
    struct.pack_into("<Q", data, _VMDK_DESCRIPTOR_SIZE_AT, 1)
    text = bytes(data[SECTOR : 2 * SECTOR]).partition(b"\0")[0]
    filler = b"#" + b"x" * (SECTOR - len(text) - 2) + b"\n"
    hint = f'parentFileNameHint="{parent_hint}"\n'.encode() + b"\0"
    data[SECTOR : 2 * SECTOR + len(hint)] = text + filler + hint
    path.write_bytes(bytes(data))
    return path


def sparse_claiming_descriptor(path: Path) -> Path:
    """A text descriptor that claims to be monolithicSparse, with no sparse header at all."""
    text = b'# Disk DescriptorFile\nversion=1\ncreateType="monolithicSparse"\nRW 8 SPARSE "x"\n'
    path.write_bytes(text.ljust(SECTOR, b"#"))
    return path
