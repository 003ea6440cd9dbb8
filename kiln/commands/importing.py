"""`kiln import MANIFEST`: create every image a manifest lists, resumably.

Each line is submitted with its stable idempotency key and followed to done, at most
--concurrency lines at a time. The state file records each step; a re-run skips finished
lines, re-attaches to running ones and re-sends unrecorded ones with the same key, so the
server never creates an image twice. Ctrl-C stops submitting; a second one stops waiting.
"""

import asyncio
import contextlib
import shlex
import signal
from collections.abc import Iterator
from pathlib import Path

import click

from contracts.errors import Code
from contracts.operations import Operation
from kiln.client import KilnClient, KilnError
from kiln.commands.common import EXIT_FAILED, EXIT_INTERRUPTED, client_command
from kiln.commands.import_state import (
    CREATING,
    FAILED,
    FINAL,
    READY,
    ImportState,
    LineRecord,
    StateMismatch,
    state_path,
)
from kiln.commands.import_view import (
    ImportView,
    Tally,
    build_report,
    print_summary,
    write_report,
)
from kiln.commands.manifest import Manifest, ManifestError, ManifestLine, read_manifest
from kiln.commands.render import Output

TICK = 0.25


def code_name(code: int) -> str:
    return Code(code).name if code in Code._value2member_map_ else str(code)


class Importer:
    def __init__(
        self, client: KilnClient, state: ImportState, view: ImportView, timeout: float | None
    ) -> None:
        self._client = client
        self._state = state
        self._view = view
        self._timeout = timeout
        self.tally = view.tally
        self.interrupts = 0
        self.gave_up: KilnError | None = None  # the server stayed unavailable: stop intake
        self._tasks: list[asyncio.Task[None]] = []

    async def run(self, lines: list[ManifestLine], concurrency: int) -> None:
        todo = iter([line for line in lines if not self._finished(line)])
        self._tasks = [asyncio.create_task(self._worker(todo)) for _ in range(concurrency)]
        ticker = asyncio.create_task(self._tick())
        try:
            await asyncio.wait(self._tasks)
        finally:
            ticker.cancel()
        for task in self._tasks:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    def interrupt(self) -> None:
        self.interrupts += 1
        if self.interrupts == 1:
            self._view.say(
                f"stopping: no new lines; waiting for the {self.tally.creating} in flight"
                " (Ctrl-C again to leave them running: a re-run re-attaches to them)"
            )
            return
        for task in self._tasks:
            task.cancel()

    def _finished(self, line: ManifestLine) -> bool:
        record = self._state.records.get(line.number)
        if record is None or record.status not in FINAL:
            return False
        if record.status == READY:
            self.tally.ready += 1
        else:
            self.tally.failed += 1
        return True

    async def _tick(self) -> None:
        while True:
            self._view.refresh()
            await asyncio.sleep(TICK)  # redraw pace of the progress display

    async def _worker(self, todo: Iterator[ManifestLine]) -> None:
        while not (self.interrupts or self.gave_up) and (line := next(todo, None)) is not None:
            await self._one(line)

    async def _one(self, line: ManifestLine) -> None:
        if line.request is None:
            return self._finish(line, FAILED, error=("INVALID_ARGUMENT", line.error))
        record = self._state.records.get(line.number)
        self.tally.submitted += 1
        try:
            operation = await self._follow(line, record.operation_id if record else None)
        except KilnError as error:
            if error.transient:
                self.gave_up = self.gave_up or error
            if error.transient or error.code == Code.DEADLINE_EXCEEDED:
                return  # left as it is: the next run takes it up again
            return self._finish(line, FAILED, error=(error.code_name, error.message))
        if operation.error is not None:
            failure = (code_name(operation.error.code), operation.error.message)
            return self._finish(line, FAILED, error=failure)
        self._finish(line, READY, image_id=getattr(operation.response, "id", ""))

    async def _follow(self, line: ManifestLine, operation_id: str | None) -> Operation:
        """Submit the line (unless it already has an operation) and wait for it to be done."""
        operation: Operation | str
        if operation_id is None:
            assert line.request is not None
            operation = await self._client.create_image(line.request, idempotency_key=line.key)
            self._state.record(
                LineRecord(
                    line=line.number,
                    key=line.key,
                    status=CREATING,
                    name=line.name,
                    operation_id=operation.id,
                    image_id=getattr(operation.metadata, "image_id", ""),
                )
            )
        else:
            operation = operation_id
        self.tally.creating += 1
        try:
            return await self._client.wait_done(operation, self._timeout, max_poll=1.0)
        finally:
            self.tally.creating -= 1

    def _finish(
        self,
        line: ManifestLine,
        status: str,
        *,
        image_id: str = "",
        error: tuple[str, str] = ("", ""),
    ) -> None:
        record = self._state.records.get(line.number)  # the operation it started, if any
        self._state.record(
            LineRecord(
                line=line.number,
                key=line.key,
                status=status,
                name=line.name,
                operation_id=record.operation_id if record else "",
                image_id=image_id or (record.image_id if record else ""),
                error_code=error[0],
                error_message=error[1],
            )
        )
        self.tally.finished_now += 1
        if status == READY:
            self.tally.ready += 1
        else:
            self.tally.failed += 1


def _resume_hint(manifest: Path, folder: str | None) -> str:
    command = ["kiln", "import", str(manifest)] + (["--folder", folder] if folder else [])
    return shlex.join(command)


async def _run(importer: Importer, manifest: Manifest, concurrency: int, view: ImportView) -> None:
    loop = asyncio.get_running_loop()
    with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
        loop.add_signal_handler(signal.SIGINT, importer.interrupt)  # main thread, POSIX only
    try:
        with view:
            await importer.run(manifest.lines, concurrency)
    finally:
        loop.remove_signal_handler(signal.SIGINT)


@client_command(None, "import")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--folder",
    envvar="KILN_FOLDER",
    default=None,
    help="Folder for CSV lines and for JSON lines without folderId.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1024),
    default=16,
    show_default=True,
    help="Lines in flight at once.",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write every line's image id, status and error here (JSON).",
)
@click.option(
    "--timeout",
    type=float,
    default=3600.0,
    show_default=True,
    help="Seconds to follow one line before leaving it to the next run.",
)
async def import_(
    client: KilnClient,
    out: Output,
    *,
    manifest: Path,
    folder: str | None,
    concurrency: int,
    report_path: Path | None,
    timeout: float,
) -> None:
    """Create the images of MANIFEST (JSON Lines of create requests, or CSV name,uri).

    Resumable: progress is kept in MANIFEST.state.jsonl; run the same command again to go on.
    """
    try:
        parsed = read_manifest(manifest, folder)
        state = ImportState(state_path(manifest), parsed.digest, len(parsed.lines))
    except (ManifestError, StateMismatch) as exc:
        raise click.UsageError(str(exc)) from None
    view = ImportView(Tally(total=len(parsed.lines)))
    importer = Importer(client, state, view, timeout)
    try:
        await _run(importer, parsed, concurrency, view)
    finally:
        state.close()
        report = build_report(parsed, state.records)
        if report_path is not None:
            write_report(report, report_path)
    if out.as_json:
        out.json(report)
    else:
        print_summary(out.console, report)
    if importer.gave_up is not None:
        view.say(f"stopped submitting: {importer.gave_up}")
    if report.unfinished:
        view.say(f"{report.unfinished} lines not finished; state kept in {state.path}")
        view.say(f"resume with: {_resume_hint(manifest, folder)}")
    if importer.interrupts:
        raise click.exceptions.Exit(EXIT_INTERRUPTED)
    if report.failed or report.unfinished:
        raise click.exceptions.Exit(EXIT_FAILED)
