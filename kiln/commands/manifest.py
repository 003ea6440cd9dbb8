"""Import manifests: JSON Lines of CreateImageRequest objects, or CSV with a `name,uri` header.

Each line gets a stable idempotency key, derived from the manifest's content hash (and the
--folder it is read with) plus its line number: re-running the same manifest sends the same
keys, so the server answers a line it has already accepted with the operation it started.
"""

import csv
import hashlib
import io
import uuid
from pathlib import Path
from typing import Any

import msgspec

from contracts.codec import parse
from contracts.errors import InvalidArgument
from contracts.images import CreateImageRequest

KEY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "kiln:import")
CSV_REQUIRED = ("name", "uri")


class ManifestError(Exception):
    """The manifest as a whole cannot be read (one bad line is only that line's failure)."""


class ManifestLine(msgspec.Struct, kw_only=True):
    number: int
    key: str
    request: CreateImageRequest | None = None
    name: str = ""
    error: str = ""  # why this line cannot be submitted


class Manifest(msgspec.Struct, kw_only=True):
    path: Path
    digest: str
    lines: list[ManifestLine]


def line_key(digest: str, number: int) -> str:
    return str(uuid.uuid5(KEY_NAMESPACE, f"{digest}:{number}"))


def read_manifest(path: Path, folder: str | None) -> Manifest:
    data = path.read_bytes()
    digest = hashlib.sha256(data + b"\0" + (folder or "").encode()).hexdigest()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not UTF-8 text ({exc})") from None
    rows = _csv_rows(text, folder) if _is_csv(path, text) else _jsonl_rows(text, folder)
    lines = [_line(digest, number, raw) for number, raw in rows]
    return Manifest(path=path, digest=digest, lines=lines)


def _is_csv(path: Path, text: str) -> bool:
    if path.suffix.lower() == ".csv":
        return True
    first = next((line for line in text.splitlines() if line.strip()), "")
    return path.suffix.lower() not in (".jsonl", ".ndjson", ".json") and not first.startswith("{")


def _jsonl_rows(text: str, folder: str | None) -> list[tuple[int, Any]]:
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = msgspec.json.decode(line)
        except msgspec.DecodeError as exc:
            rows.append((number, f"not valid JSON: {exc}"))
            continue
        if isinstance(raw, dict) and folder and not (raw.get("folderId") or raw.get("folder_id")):
            raw["folderId"] = folder
        rows.append((number, raw))
    return rows


def _csv_rows(text: str, folder: str | None) -> list[tuple[int, Any]]:
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    if missing := [name for name in CSV_REQUIRED if name not in header]:
        raise ManifestError(f"CSV header must name {','.join(CSV_REQUIRED)}; missing {missing}")
    if not folder and "folderId" not in header:
        raise ManifestError("a CSV manifest needs --folder (or a folderId column)")
    rows: list[tuple[int, Any]] = []
    for row in reader:
        if None in row:
            rows.append((reader.line_num, "more values than the header has columns"))
            continue
        values = {key: value for key, value in row.items() if value}
        rows.append((reader.line_num, {"folderId": folder, **values} if folder else values))
    return rows


def _line(digest: str, number: int, raw: Any) -> ManifestLine:
    key = line_key(digest, number)
    if isinstance(raw, str):
        return ManifestLine(number=number, key=key, error=raw)
    if not isinstance(raw, dict):
        return ManifestLine(number=number, key=key, error="a line must be a JSON object")
    name = str(raw.get("name", ""))
    try:
        request = parse(raw, CreateImageRequest)
    except InvalidArgument as exc:
        return ManifestLine(number=number, key=key, name=name, error=exc.message)
    return ManifestLine(number=number, key=key, request=request, name=request.name)
