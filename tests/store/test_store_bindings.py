"""The access_bindings table: idempotent add and remove, ordered keyset pages."""

from contracts.access import AccessBinding, Subject
from store import Database, bindings
from store.bindings import BindingKey

KEYS: list[BindingKey] = [
    ("compute.images.user", "userAccount", "ajeuser2"),
    ("viewer", "system", "allAuthenticatedUsers"),
    ("compute.images.user", "serviceAccount", "ajesa1"),
    ("editor", "userAccount", "ajeuser1"),
    ("viewer", "userAccount", "ajeuser1"),
    ("compute.images.user", "userAccount", "ajeuser1"),
    ("admin", "group", "ajegroup1"),
]


async def add_all(db: Database, resource_id: str, keys: list[BindingKey]) -> None:
    async with db.transaction() as conn:
        for binding in keys:
            assert await bindings.add(conn, resource_id, binding) is True


async def all_for(db: Database, resource_id: str) -> set[BindingKey]:
    async with db.transaction() as conn:
        return await bindings.all_for(conn, resource_id)


def test_key_is_role_subject_type_subject_id() -> None:
    binding = AccessBinding(role_id="viewer", subject=Subject(id="ajeuser1", type="userAccount"))
    assert bindings.key(binding) == ("viewer", "userAccount", "ajeuser1")


async def test_add_is_idempotent_and_remove_removes(db: Database) -> None:
    binding = KEYS[0]
    async with db.transaction() as conn:
        assert await bindings.add(conn, "img1", binding) is True
        assert await bindings.add(conn, "img1", binding) is False
        assert await bindings.add(conn, "img2", binding) is True
    assert await all_for(db, "img1") == {binding}

    async with db.transaction() as conn:
        assert await bindings.remove(conn, "img1", binding) is True
        assert await bindings.remove(conn, "img1", binding) is False
        assert await bindings.remove(conn, "img1", KEYS[1]) is False
    assert await all_for(db, "img1") == set()
    assert await all_for(db, "img2") == {binding}


async def test_pages_follow_role_then_subject_order(db: Database) -> None:
    await add_all(db, "img1", KEYS)
    await add_all(db, "img2", KEYS[:3])

    seen: list[BindingKey] = []
    after: BindingKey | None = None
    while True:
        async with db.transaction() as conn:
            page = await bindings.page(conn, "img1", after, 2)
        seen.extend(bindings.key(binding) for binding in page)
        if len(page) < 2:
            break
        after = bindings.key(page[-1])

    assert seen == sorted(KEYS)
    async with db.transaction() as conn:
        first = await bindings.page(conn, "img1", None, 1)
    role_id, subject_type, subject_id = min(KEYS)
    assert first == [
        AccessBinding(role_id=role_id, subject=Subject(id=subject_id, type=subject_type))
    ]


async def test_remove_all_clears_the_resources_named(db: Database) -> None:
    await add_all(db, "img1", KEYS)
    await add_all(db, "img2", KEYS[:2])
    await add_all(db, "img3", KEYS[1:])
    assert await all_for(db, "img1") == set(KEYS)

    async with db.transaction() as conn:
        await bindings.remove_all(conn, ["img1", "img3"])
        assert await bindings.page(conn, "img1", None, 10) == []

    assert await all_for(db, "img1") == set() == await all_for(db, "img3")
    assert await all_for(db, "img2") == set(KEYS[:2])
