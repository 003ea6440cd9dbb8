"""The access_bindings table: (resource, role, subject) triples."""

from contracts.access import AccessBinding, Subject
from store.db import Connection, Row

BindingKey = tuple[str, str, str]  # role_id, subject_type, subject_id: the list order


def key(binding: AccessBinding) -> BindingKey:
    return (binding.role_id, binding.subject.type, binding.subject.id)


def _from_row(row: Row) -> AccessBinding:
    return AccessBinding(
        role_id=row["role_id"], subject=Subject(id=row["subject_id"], type=row["subject_type"])
    )


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


async def remove_all(conn: Connection, resource_id: str) -> None:
    await conn.execute("DELETE FROM access_bindings WHERE resource_id = ?", resource_id)
