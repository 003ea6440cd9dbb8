"""What `kiln import` shows: live progress on stderr, a summary table, and the JSON report."""

import time
from pathlib import Path
from typing import Self

import msgspec
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from kiln.commands.import_state import FAILED, PENDING, READY, LineRecord
from kiln.commands.manifest import Manifest

PLAIN_EVERY = 5.0  # seconds between progress lines when stderr is not a terminal
FAILURES_SHOWN = 20


class Tally(msgspec.Struct, kw_only=True):
    total: int
    ready: int = 0
    failed: int = 0
    submitted: int = 0  # sent (or re-attached to) in this run
    creating: int = 0
    finished_now: int = 0  # finished in this run: the throughput
    started: float = msgspec.field(default_factory=time.monotonic)

    def text(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.finished_now / elapsed
        left = self.total - self.ready - self.failed
        eta = time.strftime("%H:%M:%S", time.gmtime(left / rate)) if rate and left else "--:--:--"
        return (
            f"submitted {self.submitted}  creating {self.creating}  ready {self.ready}"
            f"  failed {self.failed}  {rate:.1f}/s  ETA {eta}"
        )


class ImportView:
    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.err = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._printed = 0.0

    def __enter__(self) -> Self:
        if self.err.is_terminal:
            self._progress = Progress(
                TextColumn("importing"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                console=self.err,
                refresh_per_second=4,
            )
            self._task = self._progress.add_task("import", total=self.tally.total, stats="")
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.refresh(force=True)
        if self._progress is not None:
            self._progress.stop()

    def refresh(self, force: bool = False) -> None:
        tally = self.tally
        if self._progress is not None and self._task is not None:
            done = tally.ready + tally.failed
            self._progress.update(self._task, completed=done, stats=tally.text())
        elif force or time.monotonic() - self._printed >= PLAIN_EVERY:
            self._printed = time.monotonic()
            self.err.print(f"{tally.ready + tally.failed}/{tally.total}  {tally.text()}")

    def say(self, message: str) -> None:
        self.err.print(message)


class ErrorReport(msgspec.Struct):
    code: str
    message: str


class LineReport(msgspec.Struct, kw_only=True, rename="camel"):
    line: int
    name: str
    status: str
    image_id: str
    operation_id: str
    idempotency_key: str
    error: ErrorReport | None


class ImportReport(msgspec.Struct, kw_only=True):
    manifest: str
    total: int
    ready: int
    failed: int
    unfinished: int
    lines: list[LineReport]


def build_report(manifest: Manifest, records: dict[int, LineRecord]) -> ImportReport:
    lines = []
    for line in manifest.lines:
        record = records.get(line.number)
        status = record.status if record else PENDING
        error = None
        if record is not None and status == FAILED:
            error = ErrorReport(record.error_code, record.error_message)
        lines.append(
            LineReport(
                line=line.number,
                name=line.name,
                status=status,
                image_id=record.image_id if record else "",
                operation_id=record.operation_id if record else "",
                idempotency_key=line.key,
                error=error,
            )
        )
    count = {s: sum(1 for r in lines if r.status == s) for s in (READY, FAILED)}
    return ImportReport(
        manifest=str(manifest.path),
        total=len(lines),
        ready=count[READY],
        failed=count[FAILED],
        unfinished=len(lines) - count[READY] - count[FAILED],
        lines=lines,
    )


def write_report(report: ImportReport, path: Path) -> None:
    path.write_bytes(msgspec.json.format(msgspec.json.encode(report)) + b"\n")


def print_summary(console: Console, report: ImportReport) -> None:
    table = Table("STATUS", "LINES", title="import summary", title_justify="left", box=None)
    for status, count in (
        ("ready", report.ready),
        ("failed", report.failed),
        ("not finished", report.unfinished),
        ("total", report.total),
    ):
        table.add_row(status, str(count))
    console.print(table)
    failures = [line for line in report.lines if line.error is not None]
    if not failures:
        return
    errors = Table(
        "LINE", "NAME", "CODE", "MESSAGE", title="failures", title_justify="left", box=None
    )
    for line in failures[:FAILURES_SHOWN]:
        assert line.error is not None
        errors.add_row(str(line.line), line.name, line.error.code, line.error.message)
    console.print(errors)
    if len(failures) > FAILURES_SHOWN:
        console.print(f"… and {len(failures) - FAILURES_SHOWN} more (see --report)")
