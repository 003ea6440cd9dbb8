"""Output of the client commands: rich tables for people, the API's own JSON for scripts."""

import datetime as dt
import sys
from collections.abc import Iterable

import click
import msgspec
from rich.console import Console
from rich.table import Table

from contracts.access import (
    AccessBinding,
    AccessBindingsOperationResult,
    ListAccessBindingsResponse,
)
from contracts.errors import Code
from contracts.images import Image, ListImagesResponse
from contracts.operations import ListImageOperationsResponse, Operation

_encoder = msgspec.json.Encoder()
PIPE_WIDTH = 400


def human_size(text: str) -> str:
    size = float(text or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return text


def when(moment: dt.datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def result_of(op: Operation) -> str:
    if not op.done:
        return "running"
    if op.error is not None:
        code = op.error.code
        name = Code(code).name if code in Code._value2member_map_ else str(code)
        return f"{name}: {op.error.message}"
    return "ok"


def _fields(title: str, rows: Iterable[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left", box=None)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for name, value in rows:
        if value:
            table.add_row(name, value)
    return table


def image_rows(image: Image) -> list[tuple[str, str]]:
    return [
        ("id", image.id),
        ("folder", image.folder_id),
        ("name", image.name),
        ("family", image.family),
        ("status", image.status.value),
        ("description", image.description),
        ("labels", ", ".join(f"{k}={v}" for k, v in sorted(image.labels.items()))),
        ("size", f"{human_size(image.size)} ({image.size} bytes)"),
        ("storage size", human_size(image.storage_size)),
        ("min disk size", human_size(image.min_disk_size)),
        ("os", image.os.type.value if image.os else ""),
        ("pooled", "yes" if image.pooled else ""),
        ("product ids", ", ".join(image.product_ids)),
        ("created", when(image.created_at)),
    ]


def operation_rows(op: Operation) -> list[tuple[str, str]]:
    target = getattr(op.metadata, "image_id", "") or getattr(op.metadata, "resource_id", "")
    rows = [
        ("id", op.id),
        ("description", op.description),
        ("image", target),
        ("done", "yes" if op.done else "no"),
        ("result", result_of(op)),
        ("created", when(op.created_at)),
        ("modified", when(op.modified_at)),
    ]
    if isinstance(op.response, Image):
        rows.append(("image status", op.response.status.value))
    if isinstance(op.response, AccessBindingsOperationResult):
        changes = [
            f"{d.action.value} {binding_text(d.access_binding)}"
            for d in op.response.effective_deltas
        ]
        rows.append(("changes", "\n".join(changes) or "none"))
    return rows


def binding_text(binding: AccessBinding) -> str:
    return f"{binding.role_id}:{binding.subject.type}:{binding.subject.id}"


class Output:
    """Where a command's result goes: `--json` prints the Struct as the API sent it."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        # Piped output is never cut to 80 columns: ids must survive `| grep`, `| cut`.
        width = None if sys.stdout.isatty() else PIPE_WIDTH
        self.console = Console(highlight=False, markup=False, width=width)

    def json(self, message: msgspec.Struct) -> None:
        click.echo(_encoder.encode(message).decode())

    def image(self, image: Image) -> None:
        if self.as_json:
            return self.json(image)
        self.console.print(_fields("image", image_rows(image)))

    def operation(self, op: Operation) -> None:
        if self.as_json:
            return self.json(op)
        self.console.print(_fields("operation", operation_rows(op)))

    def images(self, page: ListImagesResponse) -> None:
        if self.as_json:
            return self.json(page)
        table = Table("ID", "NAME", "FAMILY", "STATUS", "SIZE", "CREATED", box=None)
        for image in page.images:
            table.add_row(
                image.id,
                image.name,
                image.family,
                image.status.value,
                human_size(image.size),
                when(image.created_at),
            )
        self._list(table, len(page.images), "image", page.next_page_token)

    def operations(self, page: ListImageOperationsResponse) -> None:
        if self.as_json:
            return self.json(page)
        table = Table("ID", "DESCRIPTION", "DONE", "RESULT", "CREATED", box=None)
        for op in page.operations:
            table.add_row(
                op.id,
                op.description,
                "yes" if op.done else "no",
                result_of(op),
                when(op.created_at),
            )
        self._list(table, len(page.operations), "operation", page.next_page_token)

    def bindings(self, page: ListAccessBindingsResponse) -> None:
        if self.as_json:
            return self.json(page)
        table = Table("ROLE", "SUBJECT TYPE", "SUBJECT ID", box=None)
        for binding in page.access_bindings:
            table.add_row(binding.role_id, binding.subject.type, binding.subject.id)
        self._list(table, len(page.access_bindings), "access binding", page.next_page_token)

    def _list(self, table: Table, count: int, noun: str, next_page_token: str) -> None:
        table.columns[0].no_wrap = True
        for column in table.columns[1:]:
            column.overflow = "fold"
        self.console.print(table)
        self.console.print(f"{count} {noun}{'' if count == 1 else 's'}")
        if next_page_token:
            self.console.print(f"more: --page-token {next_page_token}")
