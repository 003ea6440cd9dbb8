"""The SQLite database holds the page-token key and source URIs that may be pre-signed: the
file, its -wal and -shm files and the directory made for it are their owner's only, whatever
the umask, and a database left readable to others is tightened when it is opened."""

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from store import open_database


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def database_files(path: Path) -> list[Path]:
    return [path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")]


@pytest.mark.usefixtures("permissive_umask")
async def test_a_new_database_and_its_directory_are_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "data" / "kiln.db"

    db = await open_database(f"sqlite:///{path}")  # migrating writes: -wal and -shm exist
    try:
        assert {file.name: mode(file) for file in database_files(path)} == {
            "kiln.db": 0o600,
            "kiln.db-wal": 0o600,
            "kiln.db-shm": 0o600,
        }
        assert mode(path.parent) == 0o700
    finally:
        await db.close()


@pytest.mark.usefixtures("permissive_umask")
async def test_a_database_left_readable_to_others_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "kiln.db"
    earlier = sqlite3.connect(path)  # while it is open, its -wal and -shm files stay
    try:
        earlier.execute("PRAGMA journal_mode=WAL")
        earlier.execute("CREATE TABLE kept (x)")
        earlier.commit()
        for file in database_files(path):
            os.chmod(file, 0o644)

        db = await open_database(f"sqlite:///{path}")
        try:
            assert [mode(file) for file in database_files(path)] == [0o600] * 3
        finally:
            await db.close()
    finally:
        earlier.close()
