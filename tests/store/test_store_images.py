"""The images table: round trip, unique names, compare-and-set writes, family lookups, blob
locks."""

import asyncio

import pytest

from contracts.enums import ImageStatus, OsType
from contracts.images import (
    Generation2HardwareFeatures,
    HardwareGeneration,
    KMSKey,
    Nvidia,
    Os,
)
from store import Database, UniqueViolation, images
from store.images import ImageRecord, ImageSpec

CREATING, READY, ERROR = ImageStatus.CREATING, ImageStatus.READY, ImageStatus.ERROR


def image(image_id: str, folder_id: str = "fld1", **fields: object) -> ImageRecord:
    fields.setdefault("status", CREATING)
    fields.setdefault("created_at", 1_700_000_000_000_000)
    return ImageRecord(id=image_id, folder_id=folder_id, **fields)  # type: ignore[arg-type]


async def insert(db: Database, *records: ImageRecord) -> None:
    async with db.transaction() as conn:
        for record in records:
            await images.insert(conn, record)


async def get(db: Database, image_id: str) -> ImageRecord | None:
    async with db.transaction() as conn:
        return await images.get(conn, image_id)


async def test_every_field_round_trips(db: Database) -> None:
    record = image(
        "img1",
        name="ubuntu-2204",
        family="ubuntu",
        status=READY,
        created_at=1_712_345_678_901_234,
        size=4 * 1024**4,
        storage_size=3 * 1024**3 + 7,
        min_disk_size=5 * 1024**3,
        blob_digest="sha256:" + "ab" * 32,
        event_seq=7,
        spec=ImageSpec(
            description="Ubuntu 22.04 «LTS» ✓",
            labels={"env": "prod", "team.a/b": "x_y"},
            product_ids=["prd1", "prd2"],
            os=Os(type=OsType.LINUX, nvidia=Nvidia(driver="535")),
            pooled=True,
            hardware_generation=HardwareGeneration(
                generation2_features=Generation2HardwareFeatures(
                    secure_boot_template_id="sbt1", vtpm_enabled=True
                )
            ),
            kms_key=KMSKey(key_id="key1", version_id="v2"),
        ),
    )
    await insert(db, record, image("img2"))

    assert await get(db, "img1") == record
    assert await get(db, "img2") == image("img2")
    assert await get(db, "missing") is None


async def test_get_locked_returns_the_record(db: Database) -> None:
    await insert(db, image("img1", name="locked"))
    async with db.transaction() as conn:
        locked = await images.get_locked(conn, ["img1"])
    assert locked == {"img1": image("img1", name="locked")}


async def test_name_is_unique_within_a_folder(db: Database) -> None:
    await insert(db, image("img1", name="web"))

    with pytest.raises(UniqueViolation):
        await insert(db, image("img2", name="web"))

    assert await get(db, "img2") is None


async def test_empty_names_never_collide_and_folders_are_separate(db: Database) -> None:
    records = [image("img1"), image("img2"), image("img3", name="web"), image("img4", "fld2")]
    records.append(image("img5", "fld2", name="web"))
    await insert(db, *records)

    for record in records:
        assert await get(db, record.id) == record


async def test_same_id_twice_is_a_unique_violation(db: Database) -> None:
    await insert(db, image("img1"))
    with pytest.raises(UniqueViolation):
        await insert(db, image("img1", "fld2", name="other"))


async def test_renaming_onto_a_taken_name_is_a_unique_violation(db: Database) -> None:
    await insert(db, image("img1", name="web"), image("img2", name="db"))

    with pytest.raises(UniqueViolation):
        async with db.transaction() as conn:
            await images.replace_many(conn, [image("img2", name="web")])

    assert await get(db, "img2") == image("img2", name="db")


async def test_locked_images_are_replaced_and_deleted_together(db: Database) -> None:
    await insert(db, image("img1", name="old"), image("img2"), image("img3"))
    ready = image("img1", name="new", status=READY, size=42, blob_digest="sha256:aa")

    async with db.transaction() as conn:
        locked = await images.get_locked(conn, ["img3", "img1", "missing"])
        assert sorted(locked) == ["img1", "img3"]
        await images.replace_many(conn, [ready, image("missing")])
        await images.delete_locked(conn, ["img3", "missing"])

    assert await get(db, "img1") == ready
    assert await get(db, "img2") == image("img2")
    assert await get(db, "img3") is None and await get(db, "missing") is None


async def test_latest_ready_is_the_newest_ready_image_of_the_family(db: Database) -> None:
    await insert(
        db,
        image("img1", family="ubuntu", status=READY, created_at=100),
        image("img2", family="ubuntu", status=READY, created_at=300),
        image("img4", family="ubuntu", status=READY, created_at=300),  # tie: larger id wins
        image("img3", family="ubuntu", status=READY, created_at=300),
        image("img5", family="ubuntu", status=CREATING, created_at=500),
        image("img6", family="ubuntu", status=ERROR, created_at=600),
        image("img7", family="ubuntu", status=ImageStatus.DELETING, created_at=650),
        image("img8", "fld2", family="ubuntu", status=READY, created_at=900),
        image("img9", family="debian", status=READY, created_at=1000),
        image("imga", family="centos", status=CREATING, created_at=1100),
    )

    async with db.transaction() as conn:
        latest = await images.latest_ready(conn, "fld1", "ubuntu")
        other_folder = await images.latest_ready(conn, "fld2", "ubuntu")
        never_ready = await images.latest_ready(conn, "fld1", "centos")
        unknown = await images.latest_ready(conn, "fld1", "arch")

    assert latest is not None and latest.id == "img4"
    assert other_folder is not None and other_folder.id == "img8"
    assert never_ready is None and unknown is None


async def test_latest_ready_follows_status_changes(db: Database) -> None:
    older = image("img1", family="ubuntu", status=READY, created_at=100)
    newer = image("img2", family="ubuntu", created_at=200)
    await insert(db, older, newer)

    async with db.transaction() as conn:
        assert await images.latest_ready(conn, "fld1", "ubuntu") == older
        newer.status = READY
        await images.replace_many(conn, [newer])
        assert await images.latest_ready(conn, "fld1", "ubuntu") == newer
        await images.delete_locked(conn, ["img2"])
        assert await images.latest_ready(conn, "fld1", "ubuntu") == older


async def test_blobs_in_use(db: Database) -> None:
    shared, single = "sha256:" + "11" * 32, "sha256:" + "22" * 32
    await insert(
        db,
        image("img1", blob_digest=shared),
        image("img2", "fld2", blob_digest=shared, status=READY),
        image("img3", blob_digest=shared, status=ERROR),
        image("img4", blob_digest=single),
        image("img5"),
    )

    unused = "sha256:" + "33" * 32
    async with db.transaction() as conn:
        assert await images.blobs_in_use(conn, [shared, single, unused]) == {shared, single}
        assert await images.blobs_in_use(conn, []) == set()
        await images.delete_locked(conn, ["img1", "img2", "img4"])
        assert await images.blobs_in_use(conn, [shared, single]) == {shared}
        await images.delete_locked(conn, ["img3"])
        assert await images.blobs_in_use(conn, [shared]) == set()


async def test_blob_locks_hold_until_commit(db: Database) -> None:
    """A transaction locking bytes another one has locked waits for that one's commit."""
    events: list[str] = []
    locked, commit = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with db.transaction() as conn:
            await images.lock_blobs(conn, {"digest-b", "digest-a"})
            locked.set()
            await commit.wait()
            events.append("first committing")

    async def second() -> None:
        await locked.wait()
        async with db.transaction() as conn:
            await images.lock_blobs(conn, ["digest-c", "digest-b"])
            events.append("second locked")

    running = asyncio.gather(first(), second())
    await locked.wait()
    await asyncio.sleep(0.3)  # time for a second transaction that does not wait to lock
    commit.set()
    await running

    assert events == ["first committing", "second locked"]
