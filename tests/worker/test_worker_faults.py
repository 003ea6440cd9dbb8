"""Faults: a worker that dies holding a lease, a worker stopped mid-import, poison messages,
and outbox rows left unsent. Every image still ends in a final state, READY at most once."""

import contextlib
import os
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import REGISTRY

from bus import OutgoingMessage
from bus.base import Delivery
from bus.topology import DELIVERY_LIMIT
from contracts.commands import CreateImage, command_decoder, command_encoder
from contracts.enums import ImageStatus
from contracts.errors import Code
from contracts.ids import new_id
from contracts.names import COMMANDS_EXCHANGE, CREATE_QUEUE
from store import outbox_table
from tests.worker.conftest import Backend
from tests.worker.worker_testkit import EventLog, GatewayDouble, Source, WorkerFactory, wait_until
from worker import reconciler
from worker.dead_letter import DEAD_LETTERED, DeadLetterHandler
from worker.importing.disk_sources import DiskKind, ResolvedSource
from worker.reconciler import temporary_max_idle

Logs = list[MutableMapping[str, Any]]


def _logged(logs: Logs, event: str, **fields: object) -> Callable[[], bool]:
    def check() -> bool:
        return any(
            e["event"] == event and all(e.get(k) == v for k, v in fields.items()) for e in logs
        )

    return check


async def test_an_operation_leased_by_a_dead_worker_is_redriven_and_ready_once(
    start_worker: WorkerFactory,
    gateway: GatewayDouble,
    events: EventLog,
    source: Source,
    blob_files: Callable[[], list[Path]],
    logs: Logs,
) -> None:
    await start_worker()

    image_id, op_id = await gateway.create(
        uri=source.url("/img/data.raw"), lease_owner="dead-worker", lease_seconds=0.5
    )
    await events.operation_done(op_id)

    assert _logged(logs, "command.lease_held", operation_id=op_id)()
    assert _logged(logs, "reconciler.redrive", operation_id=op_id, lease_owner="dead-worker")()
    image = await gateway.image(image_id)
    assert image is not None and image.status is ImageStatus.READY
    assert events.types(image_id).count("compute.image.ready") == 1
    assert len(blob_files()) == 1


async def test_a_worker_stopped_mid_import_hands_the_create_to_another(
    start_worker: WorkerFactory,
    gateway: GatewayDouble,
    events: EventLog,
    source: Source,
    blob_files: Callable[[], list[Path]],
    temp_files: Callable[[], list[Path]],
    logs: Logs,
) -> None:
    first = await start_worker()
    image_id, op_id = await gateway.create(uri=source.url("/slow/data.raw"))
    await source.streaming.wait()

    await first.stop(timeout=0.1)
    assert temp_files() == []
    source.release.set()
    await start_worker()
    await events.operation_done(op_id)

    image = await gateway.image(image_id)
    assert image is not None and image.status is ImageStatus.READY
    assert events.types(image_id).count("compute.image.ready") == 1
    assert source.hits["/slow/data.raw"] == 2
    assert len(blob_files()) == 1
    # The stopped worker gave its lease back: no wait for it to expire.
    assert not _logged(logs, "command.lease_held", operation_id=op_id)()
    assert not _logged(logs, "reconciler.redrive", operation_id=op_id)()


async def test_a_source_that_stays_unavailable_ends_in_error_after_the_last_delivery(
    start_worker: WorkerFactory, gateway: GatewayDouble, events: EventLog, closed_port: int
) -> None:
    await start_worker()

    image_id, op_id = await gateway.create(uri=f"http://127.0.0.1:{closed_port}/disk.raw")
    await events.operation_done(op_id)

    op = await gateway.operation(op_id)
    assert op.error is not None and op.error.code == Code.UNAVAILABLE
    assert op.error.message.startswith(
        f"source unavailable after {DELIVERY_LIMIT + 1} attempts: cannot fetch"
    )
    assert events.types(image_id).count("compute.image.import_started") == DELIVERY_LIMIT + 1
    image = await gateway.image(image_id)
    assert image is not None and image.status is ImageStatus.ERROR


class CrashingDisks:
    """A disk source with a bug: every command using it raises."""

    def __init__(self) -> None:
        self.calls = 0

    async def resolve(self, folder_id: str, kind: DiskKind, source_id: str) -> ResolvedSource:
        self.calls += 1
        raise RuntimeError("disk source crashed")


async def test_a_command_that_always_fails_is_dead_lettered_and_ends_in_error(
    start_worker: WorkerFactory, gateway: GatewayDouble, events: EventLog
) -> None:
    disks = CrashingDisks()
    await start_worker(disks=disks)

    image_id, op_id = await gateway.create(disk_id="any-disk")
    await events.operation_done(op_id)

    assert disks.calls == DELIVERY_LIMIT + 1
    op = await gateway.operation(op_id)
    assert op.error is not None
    assert (op.error.code, op.error.message) == (Code.INTERNAL, DEAD_LETTERED)
    image = await gateway.image(image_id)
    assert image is not None and image.status is ImageStatus.ERROR


async def test_an_undecodable_command_ends_in_the_dead_letter_queue(
    start_worker: WorkerFactory, backend: Backend, logs: Logs
) -> None:
    await start_worker()
    poison = OutgoingMessage(routing_key=CREATE_QUEUE, body=b"\xff{not json", message_id="poison-1")

    await backend.bus.publish(COMMANDS_EXCHANGE, [poison])

    await wait_until(
        _logged(
            logs,
            "dead_letter.undecodable",
            message_id="poison-1",
            dead_letter_queue=CREATE_QUEUE,
            dead_letter_reason="rejected",
        )
    )
    assert _logged(logs, "bus.handler_reject", message_id="poison-1")()


async def test_the_relay_publishes_rows_left_unsent(
    start_worker: WorkerFactory, gateway: GatewayDouble, events: EventLog, source: Source
) -> None:
    image_id, op_id = await gateway.create(uri=source.url("/img/data.raw"), publish=False)

    await start_worker()
    await events.operation_done(op_id)

    assert events.types(image_id)[0] == "compute.image.created"

    async def all_sent() -> bool:
        async with gateway.db.transaction() as conn:
            return await outbox_table.backlog(conn) == 0

    await wait_until(all_sent)


async def test_a_dead_lettered_command_is_counted_once_however_often_it_is_handled() -> None:
    """The dead-letter handler's own failures bring the message back: not a second death."""
    attempts: list[object] = []

    async def commit(failure: object) -> SimpleNamespace:
        attempts.append(failure)
        if len(attempts) == 1:
            raise RuntimeError("the first commit fails")
        return SimpleNamespace(applied=True)

    handler = DeadLetterHandler(commit)  # type: ignore[arg-type]
    labels = {"queue": CREATE_QUEUE, "reason": "delivery_limit"}
    body = command_encoder.encode(
        CreateImage(command_id="c-1", operation_id=new_id("opr"), image_id=new_id("img"))
    )
    before = REGISTRY.get_sample_value("kiln_dead_lettered_messages_total", labels) or 0.0
    for count in (1, 2):
        delivery = Delivery(
            routing_key="",
            body=body,
            message_id="m-1",
            delivery_count=count,
            headers={"x-first-death-queue": CREATE_QUEUE, "x-first-death-reason": "delivery_limit"},
        )
        with contextlib.suppress(RuntimeError):
            await handler(delivery, command_decoder.decode(delivery.body))

    assert len(attempts) == 2
    assert REGISTRY.get_sample_value("kiln_dead_lettered_messages_total", labels) == before + 1


async def test_temporary_files_left_by_a_killed_import_are_swept_while_the_worker_runs(
    start_worker: WorkerFactory, blob_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only at start-up: a worker that never restarts still clears what others left."""
    monkeypatch.setattr(reconciler, "SWEEP_EVERY", 0.2)
    before = REGISTRY.get_sample_value("kiln_temporary_files_swept_total") or 0.0
    worker = await start_worker(reconcile_every=0.1)
    tmp = blob_root / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    left, live = tmp / "blob-left.part", tmp / "blob-live.part"
    left.write_bytes(b"partial")
    live.write_bytes(b"being written")
    unwritten = time.time() - temporary_max_idle(worker.config) - 1
    os.utime(left, (unwritten, unwritten))

    await wait_until(lambda: not left.exists())

    assert live.exists()
    assert REGISTRY.get_sample_value("kiln_temporary_files_swept_total") == before + 1
