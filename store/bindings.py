"""The access_bindings table: (resource, role, subject) triples."""

from collections.abc import Sequence

from contracts.access import AccessBinding, Subject
from store.db import Connection, Row

BindingKey = tuple[str, str, str]  # role_id, subject_type, subject_id: the list order


def key(binding: AccessBinding) -> BindingKey:
    return (binding.role_id, binding.subject.type, binding.subject.id)


def _from_row(row: Row) -> AccessBinding:
    return AccessBinding(
        role_id=row["role_id"], subject=Subject(id=row["subject_id"], type=row["subject_type"])
    )


# A caller's bindings on some resources: the subject ids are the caller's own and the system
# subjects that stand for everyone. One lookup of the (subject_id, resource_id, …) index.
GRANTS_SQL = (
    "SELECT role_id, subject_type, subject_id FROM access_bindings"
    " WHERE subject_id IN ({subjects}) AND resource_id IN ({resources})"
)


async def grants(
    conn: Connection, resource_ids: tuple[str, ...], subject_ids: tuple[str, ...]
) -> list[BindingKey]:
    sql = GRANTS_SQL.format(
        subjects=", ".join("?" * len(subject_ids)), resources=", ".join("?" * len(resource_ids))
    )
    rows = await conn.fetch(sql, *subject_ids, *resource_ids)
    return [(row["role_id"], row["subject_type"], row["subject_id"]) for row in rows]


async def lock(conn: Connection, resource_id: str) -> None:
    """Serialize changes of one resource's bindings until the transaction ends (PostgreSQL;
    SQLite runs one writing transaction at a time anyway)."""
    if conn.dialect == "postgresql":
        await conn.execute("SELECT pg_advisory_xact_lock(1, hashtext(?))", resource_id)


async def page(
    conn: Connection, resource_id: str, after: BindingKey | None, limit: int
) -> list[AccessBinding]:
    sql = "SELECT role_id, subject_type, subject_id FROM access_bindings WHERE resource_id = ?"
    args: list[object] = [resource_id]
    if after is not None:
        sql += " AND (role_id, subject_type, subject_id) > (?, ?, ?)"
        args.extend(after)
    sql += " ORDER BY role_id, subject_type, subject_id LIMIT ?"
    return [_from_row(row) for row in await conn.fetch(sql, *args, limit)]


async def all_for(conn: Connection, resource_id: str) -> set[BindingKey]:
    rows = await conn.fetch(
        "SELECT role_id, subject_type, subject_id FROM access_bindings WHERE resource_id = ?",
        resource_id,
    )
    return {(row["role_id"], row["subject_type"], row["subject_id"]) for row in rows}


async def add(conn: Connection, resource_id: str, binding: BindingKey) -> bool:
    changed = await conn.execute(
        "INSERT INTO access_bindings (resource_id, role_id, subject_type, subject_id)"
        " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        resource_id,
        *binding,
    )
    return changed == 1


async def remove(conn: Connection, resource_id: str, binding: BindingKey) -> bool:
    changed = await conn.execute(
        "DELETE FROM access_bindings WHERE resource_id = ? AND role_id = ?"
        " AND subject_type = ? AND subject_id = ?",
        resource_id,
        *binding,
    )
    return changed == 1


async def remove_all(conn: Connection, resource_ids: Sequence[str]) -> None:
    """Every binding of the resources."""
    await conn.executemany(
        "DELETE FROM access_bindings WHERE resource_id = ?", [(i,) for i in resource_ids]
    )
