"""The import's state file, `MANIFEST.state.jsonl`: append-only, one fsync'd JSON object a line.

The first record names the manifest (its digest); then each line's progress is appended as
it happens, and the last record of a line wins. A record torn by a crash is ignored.
"""

import os
from pathlib import Path
from typing import IO

import msgspec

CREATING = "creating"  # accepted by the server; its operation is running
READY = "ready"
FAILED = "failed"
PENDING = "pending"  # no record: never submitted, or its answer was never recorded
FINAL = (READY, FAILED)


class StateMismatch(Exception):
    """The state file was written for another manifest (or another --folder)."""


class Header(msgspec.Struct, tag="manifest", tag_field="kind", kw_only=True, rename="camel"):
    digest: str
    lines: int


class LineRecord(
    msgspec.Struct, tag="line", tag_field="kind", kw_only=True, omit_defaults=True, rename="camel"
):
    line: int
    key: str
    status: str
    name: str = ""
    operation_id: str = ""
    image_id: str = ""
    error_code: str = ""
    error_message: str = ""


_decoder = msgspec.json.Decoder(Header | LineRecord)
_encoder = msgspec.json.Encoder()


def state_path(manifest: Path) -> Path:
    return manifest.with_name(manifest.name + ".state.jsonl")


class ImportState:
    def __init__(self, path: Path, digest: str, lines: int) -> None:
        self.path = path
        self.records: dict[int, LineRecord] = {}
        self._file = self._open(digest, lines)

    def _open(self, digest: str, lines: int) -> IO[bytes]:
        data = self.path.read_bytes() if self.path.exists() else b""
        header = self._load(data)
        if header is not None and header.digest != digest:
            raise StateMismatch(
                f"{self.path} belongs to a different manifest content or --folder; restore"
                " them, or delete the state file to start over (this can create duplicates)"
            )
        file = self.path.open("ab")
        if data and not data.endswith(b"\n"):
            file.write(b"\n")  # end the record a crash tore, so the next one starts clean
        if header is None:
            self._append(file, Header(digest=digest, lines=lines))
        return file

    def _load(self, data: bytes) -> Header | None:
        header = None
        for line in data.splitlines():
            try:
                record = _decoder.decode(line)
            except msgspec.DecodeError:
                continue  # torn by a crash mid-write: that step is simply done again
            if isinstance(record, Header):
                header = header or record
            else:
                self.records[record.line] = record
        return header

    @staticmethod
    def _append(file: IO[bytes], record: Header | LineRecord) -> None:
        file.write(_encoder.encode(record) + b"\n")
        file.flush()
        os.fsync(file.fileno())

    def record(self, record: LineRecord) -> None:
        self._append(self._file, record)
        self.records[record.line] = record

    def close(self) -> None:
        self._file.close()
