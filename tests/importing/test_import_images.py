"""Real images made by qemu-img, imported over HTTP: good ones land with the right sizes,
hostile ones are refused with a precise message and leave nothing in the blob store."""

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from contracts.errors import Code
from worker.blobs import FileBlobStore
from worker.errors import ImportRefused
from worker.importing.fetch import FetchPolicy
from worker.importing.inspect import StreamInspector
from worker.importing.pipeline import import_from_url

MiB = 1 << 20


@pytest.mark.parametrize(
    ("name", "fmt", "virtual_size"),
    [
        ("empty.qcow2", "qcow2", 16 * MiB),
        ("data.qcow2", "qcow2", 4 * MiB),
        ("sparse.vmdk", "vmdk", 32 * MiB),
        ("stream.vmdk", "vmdk", 8 * MiB),
        ("zero.raw", "raw", 8 * MiB),
        ("data.raw", "raw", 4 * MiB),
    ],
)
async def test_a_good_image_is_stored_with_its_sizes(
    source,
    policy: FetchPolicy,
    blobs: FileBlobStore,
    images: Path,
    name: str,
    fmt: str,
    virtual_size: int,
) -> None:
    content = (images / name).read_bytes()

    result = await import_from_url(source.url(f"/img/{name}"), policy, blobs)

    assert (result.format, result.virtual_size) == (fmt, virtual_size)
    assert result.stored_bytes == len(content)
    assert result.digest == hashlib.sha256(content).hexdigest()
    assert blobs.path(result.digest).read_bytes() == content


async def test_the_same_image_twice_is_stored_once(
    source,
    policy: FetchPolicy,
    blobs: FileBlobStore,
    images: Path,
    stored: Callable[[], list[Path]],
) -> None:
    by_http = await import_from_url(source.url("/img/data.qcow2"), policy, blobs)
    by_file = await import_from_url(f"file://{images / 'data.qcow2'}", policy, blobs)

    assert by_http == by_file
    assert stored() == [blobs.path(by_http.digest)]


HOSTILE = [
    (
        "version.qcow2",
        Code.INVALID_ARGUMENT,
        "qcow2 image fails the unknown_features check: Unsupported qcow2 version",
    ),
    (
        "abs.vmdk",
        Code.INVALID_ARGUMENT,
        "vmdk image fails the descriptor check: Invalid extent filenames found"
        " (createType monolithicsparse)",
    ),
    (
        "desc.vmdk",
        Code.INVALID_ARGUMENT,
        "vmdk image has a corrupt header: Wrong descriptor location",
    ),
    ("twice.qcow2", Code.INVALID_ARGUMENT, "image matches more than one format: gpt, qcow2"),
    (
        "clusters.qcow2",
        Code.INVALID_ARGUMENT,
        "qcow2 image has a corrupt header: cluster_bits is 40",
    ),
    (
        "stub.qcow2",
        Code.INVALID_ARGUMENT,
        "image would be opened by qemu as qcow2, not raw",
    ),
    (
        "odd.raw",
        Code.INVALID_ARGUMENT,
        "raw image of 1000 bytes is not a whole number of 512-byte sectors",
    ),
    (
        "disk.vhd",
        Code.FAILED_PRECONDITION,
        "image format vhd is not accepted (accepted: qcow2, vmdk, raw)",
    ),
    ("page.html", Code.INVALID_ARGUMENT, "source served text/html, not a disk image"),
    (
        "huge.qcow2",
        Code.INVALID_ARGUMENT,
        "image claims a virtual size of 5497558138880 bytes, above the 4398046511104-byte"
        " (4 TiB) maximum disk size",
    ),
]


@pytest.mark.parametrize(("name", "code", "message"), HOSTILE)
async def test_a_hostile_image_is_refused_and_leaves_nothing(
    source,
    policy: FetchPolicy,
    blobs: FileBlobStore,
    stored: Callable[[], list[Path]],
    name: str,
    code: Code,
    message: str,
) -> None:
    with pytest.raises(ImportRefused) as refused:
        await import_from_url(source.url(f"/img/{name}"), policy, blobs)

    assert (refused.value.code, refused.value.message) == (code, message)
    assert stored() == []


async def test_a_truncated_qcow2_is_refused(
    source, policy: FetchPolicy, blobs: FileBlobStore, stored: Callable[[], list[Path]]
) -> None:
    with pytest.raises(
        ImportRefused, match=r"^qcow2 image is truncated: its tables end at byte \d+ of 1024$"
    ):
        await import_from_url(source.url("/img/truncated.qcow2"), policy, blobs)

    assert stored() == []


def test_a_condemning_header_is_refused_before_the_whole_stream_is_read(images: Path) -> None:
    stream = (images / "backing.qcow2").read_bytes().ljust(8 * MiB, b"\0")
    chunks = [stream[i : i + 64 * 1024] for i in range(0, len(stream), 64 * 1024)]
    inspector = StreamInspector()
    fed = 0

    with pytest.raises(ImportRefused, match="backing file"):
        for chunk in chunks:
            fed += 1
            inspector.feed(chunk)

    assert fed < len(chunks) / 2


def test_a_partitioned_raw_disk_is_raw(images: Path) -> None:
    mbr = bytearray(512)
    mbr[446:462] = (
        bytes([0x80, 1, 1, 0, 0x83, 0xFE, 0xFF, 0xFF])
        + (2048).to_bytes(4, "little")
        + (4096).to_bytes(4, "little")
    )
    mbr[510:512] = b"\x55\xaa"
    inspector = StreamInspector()
    inspector.feed(bytes(mbr) + bytes(MiB - 512))

    inspection = inspector.finish()

    assert (inspection.format, inspection.virtual_size) == ("raw", MiB)


def test_an_empty_source_is_refused() -> None:
    with pytest.raises(ImportRefused, match="image is empty"):
        StreamInspector().finish()
