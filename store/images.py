"""The images table: records, and every query the API makes of it."""

from collections.abc import Collection, Sequence
from typing import Any, Literal

import msgspec

from contracts.enums import ImageStatus
from contracts.images import HardwareGeneration, Image, KMSKey, Os, reported_os
from runtime.clock import to_datetime
from store.db import Connection, Row, fetch_locked, lock_names_until_commit


class ImageSpec(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The fields no query looks at, kept as one JSON column."""

    description: str = ""
    labels: dict[str, str] = {}
    product_ids: list[str] = []
    os: Os | None = None
    pooled: bool = False
    hardware_generation: HardwareGeneration | None = None
    kms_key: KMSKey | None = None


class ImageRecord(msgspec.Struct, kw_only=True):
    id: str
    folder_id: str
    name: str = ""
    family: str = ""
    status: ImageStatus
    created_at: int
    size: int = 0
    storage_size: int = 0
    min_disk_size: int = 0
    blob_digest: str | None = None
    event_seq: int = 0
    spec: ImageSpec = msgspec.field(default_factory=ImageSpec)


class Condition(msgspec.Struct, frozen=True):
    """One filter term: `column op values` with op one of =, !=, IN, NOT IN."""

    column: Literal["name", "family", "status"]
    op: Literal["=", "!=", "IN", "NOT IN"]
    values: tuple[str, ...]


SortColumn = Literal["id", "name", "created_at"]

_spec_encoder = msgspec.json.Encoder()
_spec_decoder = msgspec.json.Decoder(ImageSpec)
_COLUMNS = (
    "id, folder_id, name, family, status, created_at, size, storage_size, min_disk_size,"
    " blob_digest, event_seq, spec"
)


def to_image(record: ImageRecord) -> Image:
    spec = record.spec
    return Image(
        id=record.id,
        folder_id=record.folder_id,
        created_at=to_datetime(record.created_at),
        name=record.name,
        description=spec.description,
        labels=spec.labels,
        family=record.family,
        size=str(record.size),
        storage_size=str(record.storage_size),
        min_disk_size=str(record.min_disk_size),
        product_ids=spec.product_ids,
        status=record.status,
        os=reported_os(spec.os),
        pooled=spec.pooled,
        hardware_generation=spec.hardware_generation,
        kms_key=spec.kms_key,
    )


def _from_row(row: Row) -> ImageRecord:
    return ImageRecord(
        id=row["id"],
        folder_id=row["folder_id"],
        name=row["name"],
        family=row["family"],
        status=ImageStatus(row["status"]),
        created_at=row["created_at"],
        size=row["size"],
        storage_size=row["storage_size"],
        min_disk_size=row["min_disk_size"],
        blob_digest=row["blob_digest"],
        event_seq=row["event_seq"],
        spec=_spec_decoder.decode(row["spec"]),
    )


_MUTABLE = (
    "folder_id",
    "name",
    "family",
    "status",
    "created_at",
    "size",
    "storage_size",
    "min_disk_size",
    "blob_digest",
    "spec",
)


def _mutable_values(record: ImageRecord) -> tuple[Any, ...]:
    """Every column but `id` and `event_seq`, in `_MUTABLE` order."""
    return (
        record.folder_id,
        record.name,
        record.family,
        record.status.value,
        record.created_at,
        record.size,
        record.storage_size,
        record.min_disk_size,
        record.blob_digest,
        _spec_encoder.encode(record.spec).decode(),
    )


async def insert(conn: Connection, record: ImageRecord) -> None:
    await insert_many(conn, [record])


async def insert_many(conn: Connection, records: Sequence[ImageRecord]) -> None:
    """Written in name order, so that two batches that both hold a name cannot deadlock on
    the unique index (one of them fails on it instead)."""
    marks = ", ".join("?" for _ in range(len(_MUTABLE) + 2))
    await conn.executemany(
        f"INSERT INTO images (id, event_seq, {', '.join(_MUTABLE)}) VALUES ({marks})",
        [(r.id, r.event_seq, *_mutable_values(r)) for r in sorted(records, key=_by_name)],
    )


def _by_name(record: ImageRecord) -> tuple[str, str, str]:
    return (record.folder_id, record.name, record.id)


async def replace_many(conn: Connection, records: Sequence[ImageRecord]) -> None:
    """Write records whose rows this transaction has locked (`get_locked`); in name order,
    as `insert_many`."""
    assignments = ", ".join(f"{column} = ?" for column in _MUTABLE)
    await conn.executemany(
        f"UPDATE images SET {assignments} WHERE id = ?",
        [(*_mutable_values(r), r.id) for r in sorted(records, key=_by_name)],
    )


async def get_locked(conn: Connection, image_ids: Sequence[str]) -> dict[str, ImageRecord]:
    """The images that exist among `image_ids`, locked until commit (in id order)."""
    rows = await fetch_locked(conn, "images", _COLUMNS, image_ids)
    return {record.id: record for record in map(_from_row, rows)}


async def get(conn: Connection, image_id: str) -> ImageRecord | None:
    """The image, unlocked (`get_locked` locks)."""
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM images WHERE id = ?", image_id)
    return _from_row(row) if row else None


async def store_event_seqs(conn: Connection, records: Sequence[ImageRecord]) -> None:
    """Write the `event_seq` of images whose rows this transaction locked and whose events it
    numbered (store/image_events.py)."""
    if records:
        await conn.executemany(
            "UPDATE images SET event_seq = ? WHERE id = ?", [(r.event_seq, r.id) for r in records]
        )


async def delete_locked(conn: Connection, image_ids: Sequence[str]) -> None:
    """Delete images whose rows this transaction locked."""
    await conn.executemany("DELETE FROM images WHERE id = ?", [(i,) for i in image_ids])


async def lock_blobs(conn: Connection, digests: Collection[str]) -> None:
    """Serialize, until commit, every transaction that adds or drops a user of these bytes."""
    await lock_names_until_commit(conn, digests)


async def blobs_in_use(conn: Connection, digests: Sequence[str]) -> set[str]:
    """Those of `digests` that an image points at."""
    if not digests:  # `IN ()` is no SQL to PostgreSQL
        return set()
    marks = ", ".join("?" for _ in digests)
    rows = await conn.fetch(
        f"SELECT DISTINCT blob_digest FROM images WHERE blob_digest IN ({marks})", *digests
    )
    return {row["blob_digest"] for row in rows}


async def latest_ready(conn: Connection, folder_id: str, family: str) -> ImageRecord | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM images WHERE folder_id = ? AND family = ? AND status = 'READY'"
        " ORDER BY created_at DESC, id DESC LIMIT 1",
        folder_id,
        family,
    )
    return _from_row(row) if row else None


async def latest_ready_granted(
    conn: Connection,
    folder_id: str,
    family: str,
    subject: str,
    everyone: tuple[str, ...],
    roles: tuple[str, ...],
) -> ImageRecord | None:
    """The newest READY image of the family among those on which `subject` (or a system
    subject in `everyone`) holds one of `roles` by an image binding."""
    everyone_marks, role_marks = ", ".join("?" * len(everyone)), ", ".join("?" * len(roles))
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM images WHERE folder_id = ? AND family = ? AND status = 'READY'"
        " AND id IN (SELECT resource_id FROM access_bindings"
        f" WHERE role_id IN ({role_marks}) AND ((subject_id = ? AND subject_type <> 'system')"
        f" OR (subject_id IN ({everyone_marks}) AND subject_type = 'system')))"
        " ORDER BY created_at DESC, id DESC LIMIT 1",
        folder_id,
        family,
        *roles,
        subject,
        *everyone,
    )
    return _from_row(row) if row else None


async def page(
    conn: Connection,
    folder_id: str,
    conditions: Sequence[Condition],
    sort: SortColumn,
    descending: bool,
    after: tuple[Any, ...] | None,
    limit: int,
) -> list[ImageRecord]:
    """One keyset page ordered by (sort, id); `after` is the last row's (sort value, id)."""
    where, args = ["folder_id = ?"], [folder_id]
    for condition in conditions:
        clause, values = _condition_sql(condition)
        where.append(clause)
        args.extend(values)
    direction, compare = ("DESC", "<") if descending else ("ASC", ">")
    keys = ["id"] if sort == "id" else [sort, "id"]
    if after is not None:
        where.append(f"({', '.join(keys)}) {compare} ({', '.join('?' for _ in keys)})")
        args.extend(after[-len(keys) :])
    order = ", ".join(f"{key} {direction}" for key in keys)
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM images WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?",
        *args,
        limit,
    )
    return [_from_row(row) for row in rows]


def _condition_sql(condition: Condition) -> tuple[str, tuple[str, ...]]:
    column, op, values = condition.column, condition.op, condition.values
    if op in ("=", "!="):
        return f"{column} {'=' if op == '=' else '<>'} ?", values[:1]
    marks = ", ".join("?" for _ in values)
    return f"{column} {op} ({marks})", values
