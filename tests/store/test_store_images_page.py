"""Keyset pagination of a folder's images: every sort, both directions, with filters."""

import random
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from contracts.enums import ImageStatus
from store import Database, images
from store.images import Condition, ImageRecord, SortColumn

FOLDER = "fld1"
PAGE = 3
SORTS: list[SortColumn] = ["id", "name", "created_at"]


def image(number: int, folder_id: str = FOLDER, **fields: Any) -> ImageRecord:
    fields.setdefault("status", ImageStatus.READY)
    fields.setdefault("created_at", 0)
    return ImageRecord(id=f"img{number:017d}", folder_id=folder_id, **fields)


def twenty_images() -> list[ImageRecord]:
    """Ids, names and creation times in unrelated orders, with ties in name and created_at."""
    rng = random.Random(20240611)
    numbers = rng.sample(range(1, 1000), 20)
    names = [""] * 5 + [f"n{index:02d}" for index in range(15)]
    rng.shuffle(names)
    statuses = [ImageStatus.READY, ImageStatus.CREATING, ImageStatus.ERROR]
    return [
        image(
            number,
            name=name,
            family="ubuntu" if index % 2 else "debian",
            status=statuses[index % 3],
            created_at=1_700_000_000_000_000 + (index * 7 % 6) * 1_000,
        )
        for index, (number, name) in enumerate(zip(numbers, names, strict=True))
    ]


def sort_key(sort: SortColumn) -> Callable[[ImageRecord], tuple[Any, ...]]:
    return lambda record: (getattr(record, sort), record.id)


def in_order(records: Sequence[ImageRecord], sort: SortColumn, descending: bool) -> list[str]:
    return [record.id for record in sorted(records, key=sort_key(sort), reverse=descending)]


@pytest.fixture
async def folder(db: Database) -> list[ImageRecord]:
    """Twenty images in FOLDER, and a few with the same names in another folder."""
    records = twenty_images()
    async with db.transaction() as conn:
        for record in records:
            await images.insert(conn, record)
        for number, other in enumerate(records[:4], start=2000):
            await images.insert(conn, image(number, "fld2", name=other.name))
    return records


async def next_page(
    db: Database,
    sort: SortColumn,
    descending: bool,
    after: tuple[Any, ...] | None,
    conditions: Sequence[Condition] = (),
) -> list[ImageRecord]:
    async with db.transaction() as conn:
        page = await images.page(conn, FOLDER, conditions, sort, descending, after, PAGE)
    assert len(page) <= PAGE
    return page


def cursor(last: ImageRecord, sort: SortColumn) -> tuple[Any, ...]:
    """The page token's content: the last row's (sort value, id)."""
    return (getattr(last, sort), last.id)


async def walk(
    db: Database,
    sort: SortColumn,
    descending: bool,
    conditions: Sequence[Condition] = (),
    between_pages: Callable[[], Any] | None = None,
) -> list[str]:
    """Every id, following pages until a short one."""
    seen: list[str] = []
    after = None
    while True:
        page = await next_page(db, sort, descending, after, conditions)
        seen.extend(record.id for record in page)
        if len(page) < PAGE:
            return seen
        after = cursor(page[-1], sort)
        if between_pages is not None:
            await between_pages()
            between_pages = None


@pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
@pytest.mark.parametrize("sort", SORTS)
async def test_pages_visit_every_row_once_in_order(
    db: Database, folder: list[ImageRecord], sort: SortColumn, descending: bool
) -> None:
    seen = await walk(db, sort, descending)

    assert seen == in_order(folder, sort, descending)
    assert len(set(seen)) == len(folder) == 20


@pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
@pytest.mark.parametrize("sort", SORTS)
async def test_rows_inserted_between_pages(
    db: Database, folder: list[ImageRecord], sort: SortColumn, descending: bool
) -> None:
    """A row sorting after the cursor shows up later; one sorting before it never does;
    the rows that were there all along are each seen exactly once."""
    lowest = image(0, name="", created_at=0)
    highest = image(10**17 - 1, name="zzzz", created_at=2**62)
    ahead, behind = (lowest, highest) if descending else (highest, lowest)

    async def insert_both() -> None:
        async with db.transaction() as conn:
            await images.insert(conn, highest)
            await images.insert(conn, lowest)

    seen = await walk(db, sort, descending, between_pages=insert_both)

    assert seen == [*in_order(folder, sort, descending), ahead.id]
    assert behind.id not in seen


async def test_page_of_an_empty_folder_and_past_the_end(db: Database) -> None:
    assert await next_page(db, "name", False, None) == []
    assert await next_page(db, "created_at", True, (2**62, "img")) == []


def matches(record: ImageRecord, condition: Condition) -> bool:
    value = getattr(record, condition.column)
    value = value.value if isinstance(value, ImageStatus) else value
    return {
        "=": value == condition.values[0],
        "!=": value != condition.values[0],
        "IN": value in condition.values,
        "NOT IN": value not in condition.values,
    }[condition.op]


CONDITIONS = {
    "name=": [Condition("name", "=", ("n03",))],
    "name=empty": [Condition("name", "=", ("",))],
    "name!=": [Condition("name", "!=", ("n03",))],
    "name IN": [Condition("name", "IN", ("n01", "n07", "n11", "absent"))],
    "name NOT IN": [Condition("name", "NOT IN", ("n01", "n07", "", "absent"))],
    "family and status": [
        Condition("family", "=", ("ubuntu",)),
        Condition("status", "IN", ("READY", "ERROR")),
    ],
    "nothing": [Condition("name", "=", ("absent",))],
}


@pytest.mark.parametrize("conditions", CONDITIONS.values(), ids=CONDITIONS.keys())
@pytest.mark.parametrize("sort", SORTS)
async def test_conditions_filter_every_page(
    db: Database, folder: list[ImageRecord], conditions: list[Condition], sort: SortColumn
) -> None:
    wanted = [record for record in folder if all(matches(record, c) for c in conditions)]

    seen = await walk(db, sort, True, conditions)

    assert seen == in_order(wanted, sort, True)
