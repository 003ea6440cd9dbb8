"""Versioned schema migrations, applied at start-up, once even when processes start together."""

import time

import structlog

from store.db import Connection, Database, lock_until_commit

log = structlog.get_logger(__name__)

# One entry per version; never edit a released entry, append a new one.
# {serial}, {blob} and {collate} are the only dialect differences. Sorted text columns use
# byte order on both backends (SQLite's default), so pages come out alike on each.
MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE images (
            id TEXT PRIMARY KEY,
            folder_id TEXT NOT NULL,
            name TEXT{collate} NOT NULL DEFAULT '',
            family TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            size BIGINT NOT NULL DEFAULT 0,
            storage_size BIGINT NOT NULL DEFAULT 0,
            min_disk_size BIGINT NOT NULL DEFAULT 0,
            blob_digest TEXT,
            event_seq BIGINT NOT NULL DEFAULT 0,
            spec TEXT NOT NULL
        );
        CREATE UNIQUE INDEX images_folder_unique_name ON images (folder_id, name) WHERE name <> '';
        CREATE INDEX images_by_folder_id ON images (folder_id, id);
        CREATE INDEX images_by_folder_name ON images (folder_id, name, id);
        CREATE INDEX images_by_folder_created ON images (folder_id, created_at, id);
        CREATE INDEX images_latest_ready ON images (folder_id, family, created_at, id)
            WHERE status = 'READY';
        CREATE INDEX images_by_blob ON images (blob_digest) WHERE blob_digest IS NOT NULL;

        CREATE TABLE operations (
            id TEXT PRIMARY KEY,
            resource_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            description TEXT NOT NULL,
            created_by TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            modified_at BIGINT NOT NULL,
            done INTEGER NOT NULL DEFAULT 0,
            metadata TEXT NOT NULL,
            error TEXT,
            response TEXT,
            params TEXT NOT NULL DEFAULT '{{}}',
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            lease_owner TEXT,
            lease_until BIGINT NOT NULL DEFAULT 0
        );
        CREATE INDEX operations_by_resource ON operations (resource_id, created_at, id);
        CREATE INDEX operations_open_by_lease ON operations (lease_until) WHERE done = 0;

        CREATE TABLE access_bindings (
            resource_id TEXT NOT NULL,
            role_id TEXT{collate} NOT NULL,
            subject_type TEXT{collate} NOT NULL,
            subject_id TEXT{collate} NOT NULL,
            PRIMARY KEY (resource_id, role_id, subject_type, subject_id)
        );

        CREATE TABLE idempotency_keys (
            subject TEXT NOT NULL,
            key TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            operation_id TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            PRIMARY KEY (subject, key)
        );
        CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

        CREATE TABLE outbox (
            seq {serial},
            exchange TEXT NOT NULL,
            routing_key TEXT NOT NULL,
            message_id TEXT NOT NULL,
            content_type TEXT NOT NULL,
            type TEXT NOT NULL,
            correlation_id TEXT NOT NULL,
            body {blob} NOT NULL,
            created_at BIGINT NOT NULL,
            sent_at BIGINT
        );
        CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_at IS NULL;

        CREATE TABLE secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL);
        """,
    ),
    (
        2,
        # The HTTP request that started an operation, so a re-driven command keeps it.
        "ALTER TABLE operations ADD COLUMN request_id TEXT NOT NULL DEFAULT ''",
    ),
    (
        3,
        # The event log of the HTTP event stream (store/event_log.py): per-folder positions.
        """
        CREATE TABLE folder_positions (
            folder_id TEXT PRIMARY KEY,
            last_position BIGINT NOT NULL
        );
        CREATE TABLE event_log (
            folder_id TEXT NOT NULL,
            position BIGINT NOT NULL,
            type TEXT NOT NULL,
            body {blob} NOT NULL,
            created_at BIGINT NOT NULL,
            PRIMARY KEY (folder_id, position)
        );
        CREATE INDEX event_log_by_age ON event_log (created_at);
        """,
    ),
    (
        4,
        # Access control: a caller's grants on an image and its folder in one index lookup
        # (folder bindings live under `folder/<folderId>`); the folder of every operation, so
        # that those of a deleted image stay readable to the folder's viewers.
        """
        CREATE INDEX access_bindings_by_subject
            ON access_bindings (subject_id, resource_id, role_id, subject_type);
        ALTER TABLE operations ADD COLUMN folder_id TEXT NOT NULL DEFAULT '';
        UPDATE operations SET folder_id = COALESCE(
            (SELECT images.folder_id FROM images WHERE images.id = operations.resource_id), ''
        )
        """,
    ),
    (
        5,
        # Events wait here, in their writer's transaction, until the sequencer numbers them
        # into event_log (store/event_log.py), so writers of one folder never wait for each
        # other.
        """
        CREATE TABLE event_queue (
            seq {serial},
            folder_id TEXT NOT NULL,
            type TEXT NOT NULL,
            body {blob} NOT NULL,
            created_at BIGINT NOT NULL
        )
        """,
    ),
    (
        6,
        # Until when an outbox relay holds an unsent row (store/outbox_table.py claim_unsent), so
        # that the relays of several workers do not publish the same rows.
        "ALTER TABLE outbox ADD COLUMN relay_until BIGINT NOT NULL DEFAULT 0",
    ),
]

DIALECT = {
    "sqlite": {"serial": "INTEGER PRIMARY KEY AUTOINCREMENT", "blob": "BLOB", "collate": ""},
    "postgresql": {"serial": "BIGSERIAL PRIMARY KEY", "blob": "BYTEA", "collate": ' COLLATE "C"'},
}
# Any fixed number: the advisory lock that makes concurrent start-ups migrate one at a time.
_MIGRATION_LOCK = 7_245_816


async def migrate(db: Database) -> int:
    """Apply pending migrations; the schema version after."""
    async with db.transaction() as conn:
        await lock_until_commit(conn, _MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)"
        )
        row = await conn.fetchrow("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations")
        current = int(row["v"]) if row else 0
        for version, script in MIGRATIONS:
            if version > current:
                await _apply(conn, db.dialect, version, script)
                current = version
    return current


async def _apply(conn: Connection, dialect: str, version: int, script: str) -> None:
    for statement in script.format(**DIALECT[dialect]).split(";"):
        if statement.strip():
            await conn.execute(statement)
    await conn.execute(
        "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
        version,
        time.time_ns() // 1000,
    )
    log.info("schema migrated", version=version)
