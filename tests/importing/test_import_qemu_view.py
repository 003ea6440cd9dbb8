"""Kiln decides an image's format as qemu would and stores nothing that makes qemu read another
file. qemu itself is the judge: `qemu-img info` shows what each refused image would have made a
consumer open, and Kiln's probe names the format qemu picks for every kind of file."""

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from contracts.errors import Code
from support import hostile_images
from support.images import qemu_img
from worker.blobs import FileBlobStore
from worker.errors import ImportRefused
from worker.importing.fetch import FetchPolicy
from worker.importing.inspect import StreamInspector
from worker.importing.pipeline import import_from_url
from worker.importing.qemu_probe import probe

DESCRIPTOR = "image is a VMDK text descriptor: its data would be read from other files"

# name in the images fixture → what else qemu opens for it, and what Kiln answers.
EXTERNAL = {
    "padded-flat.vmdk": ("host-secret", Code.INVALID_ARGUMENT, DESCRIPTOR),
    "flat.vmdk": ("flat-flat.vmdk", Code.INVALID_ARGUMENT, DESCRIPTOR),
    "split.vmdk": ("split-s001.vmdk", Code.INVALID_ARGUMENT, DESCRIPTOR),
    "child.vmdk": (
        "sparse.vmdk",
        Code.INVALID_ARGUMENT,
        "vmdk image has a parent (parentFileNameHint)",
    ),
    "overlong.vmdk": (
        "sparse.vmdk",
        Code.INVALID_ARGUMENT,
        "vmdk image has a corrupt header: its descriptor does not end within its sectors",
    ),
    "backing.qcow2": ("empty.qcow2", Code.INVALID_ARGUMENT, "qcow2 image has a backing file"),
    "datafile.qcow2": ("ext.bin", Code.INVALID_ARGUMENT, "qcow2 image has an external data file"),
    "backing.qcow": (
        "empty.qcow2",
        Code.FAILED_PRECONDITION,
        "image format qcow is not accepted (accepted: qcow2, vmdk, raw)",
    ),
    "backing.qed": (
        "empty.qcow2",
        Code.FAILED_PRECONDITION,
        "image format qed is not accepted (accepted: qcow2, vmdk, raw)",
    ),
}


async def _refusal(url: str, policy: FetchPolicy, blobs: FileBlobStore) -> ImportRefused:
    with pytest.raises(ImportRefused) as refused:
        await import_from_url(url, policy, blobs)
    return refused.value


@pytest.mark.parametrize("name", sorted(EXTERNAL))
async def test_an_image_that_makes_qemu_open_another_file_is_refused(
    images: Path,
    source,
    policy: FetchPolicy,
    blobs: FileBlobStore,
    stored: Callable[[], list[Path]],
    name: str,
) -> None:
    reference, code, message = EXTERNAL[name]
    references = hostile_images.external_references(images / name)
    assert reference in [Path(ref).name for ref in references], references

    refused = await _refusal(source.url(f"/img/{name}"), policy, blobs)

    assert (refused.code, refused.message) == (code, message)
    assert stored() == []
    assert source.hits[f"/img/{name}"] == 1


async def test_a_vmdk_claiming_a_parent_by_cid_is_refused(
    images: Path, source, policy: FetchPolicy, blobs: FileBlobStore
) -> None:
    assert hostile_images.qemu_info(images / "parent-cid.vmdk")["format-specific"]["data"][
        "parent-cid"
    ] == int("1234abcd", 16)

    refused = await _refusal(source.url("/img/parent-cid.vmdk"), policy, blobs)

    assert refused.message == "vmdk image has a parent (parentCID)"


async def test_no_link_of_a_chain_reading_a_host_file_is_stored(
    tmp_path: Path, images: Path, source, policy: FetchPolicy, blobs: FileBlobStore
) -> None:
    """A sparse VMDK whose parent is a stored descriptor whose extent is a host file: with both
    in a blob store, `qemu-img convert -f vmdk` of the first reads the host file."""
    secret = tmp_path / "passwd"
    secret.write_bytes(b"root:x:0:0:root:/root:/bin/sh\n".ljust(1024, b"#"))
    layout = FileBlobStore(tmp_path / "blobs")
    descriptor = _as_blob(
        layout, hostile_images.flat_descriptor(tmp_path / "d", secret, padded=True)
    )
    child = tmp_path / "blobs" / "sha256" / "00" / "child.vmdk"
    child.parent.mkdir(parents=True, exist_ok=True)
    child = _as_blob(layout, hostile_images.vmdk_with_parent(child, descriptor))
    converted = tmp_path / "out.raw"
    qemu_img("convert", "-f", "vmdk", "-O", "raw", str(child), str(converted))
    assert converted.read_bytes().startswith(b"root:x:0:0"), "the chain does not read the file"

    for link in (descriptor, child):
        shutil.copy(link, images / link.name)
        refused = await _refusal(source.url(f"/img/{link.name}"), policy, blobs)
        assert refused.code is Code.INVALID_ARGUMENT, refused.message


def _as_blob(store: FileBlobStore, path: Path) -> Path:
    """Move a file to where the file store keeps a blob of its bytes."""
    target = store.path(hashlib.sha256(path.read_bytes()).hexdigest())
    target.parent.mkdir(parents=True, exist_ok=True)
    path.rename(target)
    return target


def _qemu_format(path: Path) -> str:
    return str(hostile_images.qemu_info(path)["format"])


@pytest.mark.parametrize(
    "kind", ["qcow", "qcow2", "qed", "vdi", "vhdx", "vmdk", "vpc", "parallels", "raw"]
)
def test_the_probe_names_the_format_qemu_picks(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"disk.{kind}"
    qemu_img("create", "-f", kind, str(path), "4M")

    assert probe(path.read_bytes()[:4096]) == _qemu_format(path) == kind


DESCRIPTOR_SHAPES = {
    "comments and blank lines first": (b"# c\n   \n  \r\nversion=1\n", "vmdk"),
    "CRLF line ends": (b"# Disk DescriptorFile\r\nversion=2\r\n", "vmdk"),
    "an empty line without a space": (b"# c\n\nversion=1\n", "raw"),
    "an unknown version": (b"version=4\n", "raw"),
    "text before the version": (b"CID=1\nversion=1\n", "raw"),
    "a version line past the first sector": (b"#" + b"x" * 600 + b"\nversion=1\n", "raw"),
}


@pytest.mark.parametrize("shape", sorted(DESCRIPTOR_SHAPES))
def test_the_probe_reads_text_descriptors_as_qemu_does(tmp_path: Path, shape: str) -> None:
    """Each shape heads a descriptor qemu can open, so `qemu-img info` names its format."""
    head, expected = DESCRIPTOR_SHAPES[shape]
    extent = tmp_path / "extent"
    extent.write_bytes(bytes(4096))
    body = f'CID=1\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 8 FLAT "{extent}" 0\n'
    path = tmp_path / "descriptor"
    path.write_bytes((head + body.encode()).ljust(1024, b"\n"))

    assert probe(path.read_bytes()) == _qemu_format(path) == expected


def test_bochs_and_cloop_headers_are_recognised() -> None:
    bochs = b"Bochs Virtual HD Image".ljust(32, b"\0") + b"Redolog".ljust(16, b"\0")
    bochs += b"Growing".ljust(16, b"\0") + (0x00020000).to_bytes(4, "little")
    cloop = b"#!/bin/sh\n#V2.0 Format\n"
    cloop += b"modprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n"

    assert (probe(bochs), probe(cloop), probe(bytes(512))) == ("bochs", "cloop", "raw")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("sparse-claim.vmdk", DESCRIPTOR),
        ("notes.raw", "raw image's first 512 bytes are printable text, not a disk image"),
    ],
)
async def test_text_is_not_a_disk_image(
    source, policy: FetchPolicy, blobs: FileBlobStore, name: str, message: str
) -> None:
    refused = await _refusal(source.url(f"/img/{name}"), policy, blobs)

    assert (refused.code, refused.message) == (Code.INVALID_ARGUMENT, message)


@pytest.mark.parametrize("where", ["safety_check", "finish", "virtual_size"])
def test_whatever_an_inspector_raises_refuses_the_image(
    images: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """The parsers read hostile bytes: a crash is a refusal, never a retry."""
    from oslo_utils.imageutils import format_inspector as fi

    def crash(*_: object) -> None:
        raise KeyError("header")

    monkeypatch.setattr(
        fi.QcowInspector, where, property(crash) if where == "virtual_size" else crash
    )
    inspector = StreamInspector()
    with pytest.raises(ImportRefused) as refused:
        inspector.feed((images / "empty.qcow2").read_bytes())
        inspector.finish()

    assert refused.value.code is Code.INVALID_ARGUMENT
    assert refused.value.message == "image could not be inspected: KeyError: 'header'"
