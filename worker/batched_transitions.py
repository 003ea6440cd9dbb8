"""A batch of transitions (worker/settle.py) in one transaction, the common ones written
together. Imports that start and imports that end READY are most of a worker's transitions:
for those, the batch locks and reads their images at once, takes their leases or locks their
operations at once, and writes images, operations and events with one statement per table
for all of them, as the gateway writes its creates. Any other step (an interrupted create, a
copy, a failure, a delete, an image or an operation that two steps name) runs its own
transition, in the same transaction, after them."""

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, NamedTuple, Protocol, TypeVar

import structlog

from contracts.operations import OperationResponse
from runtime.clock import now_us
from store import events, images, operations
from store.db import Connection
from store.images import ImageRecord, to_image
from store.operations import OperationRecord
from worker.leases import take_leases
from worker.observe import note_finished
from worker.transitions import (
    ImportDone,
    StartImport,
    Transition,
    cancel_claimed,
    create_interrupted,
    finished_record,
    import_started,
    ready,
    ready_announcement,
    ready_record,
)


class OfImage(Protocol):
    @property
    def image_id(self) -> str: ...


In = TypeVar("In", bound=OfImage)  # a transition's input
TransitionFn = Callable[[Connection, In], Awaitable[Transition]]
Lone = Callable[[], Awaitable[Transition]]  # a step left to run on its own
# A common step's news: (step, its image, its events, the operation it claimed).
_Announced = tuple[int, ImageRecord, list[events.Event], OperationRecord | None]


class Step(NamedTuple):
    """One transition to run: `uses` names the blob it makes an image point at, `context` the
    log context of the handler that asked for it."""

    transition: TransitionFn[Any]
    data: OfImage
    uses: str | None
    context: dict[str, object]


class _Batch:
    """The common steps of a batch: decided in memory against the rows the batch locked, and
    written together."""

    def __init__(self, conn: Connection, locked: dict[str, ImageRecord]) -> None:
        self.conn = conn
        self.locked = locked
        self.now = now_us()
        self.results: dict[int, Transition] = {}
        self.lone: dict[int, Lone] = {}  # steps that must run on their own after all, and how
        self._ready: list[ImageRecord] = []
        self._finished: list[tuple[str, OperationResponse]] = []
        self._announced: list[_Announced] = []

    async def start(self, starts: dict[int, StartImport]) -> None:
        """Claim the creates and announce their imports, as transitions.import_started."""
        if not starts:
            return
        claimed = await take_leases(self.conn, [start.lease for start in starts.values()])
        for index, start in starts.items():
            image, op = self.locked[start.image_id], claimed.get(start.lease.operation_id)
            if op is None:
                self.results[index] = Transition(applied=False)
            elif create_interrupted(image, op):
                self.lone[index] = partial(cancel_claimed, self.conn, op, start.image_id)
            else:
                self._announce(index, image, [("import_started", op.id, to_image(image))], op)

    async def ready(self, dones: dict[int, ImportDone]) -> None:
        """End the imports READY, as transitions.ready, where nothing stands in the way (the
        others are left to `ready` itself)."""
        if not dones:
            return
        ops = await operations.get_locked(self.conn, [done.operation_id for done in dones.values()])
        for index, done in dones.items():
            image, op = self.locked[done.image_id], ops.get(done.operation_id)
            if op is None or op.done or create_interrupted(image, op) or done.result.copied_from:
                continue
            updated = ready_record(image, done.result)
            response, ready_event = ready_announcement(updated, op)
            finished = finished_record(op, self.now, response=response)
            self._ready.append(updated)
            self._finished.append((op.id, response))
            self._announce(index, updated, [ready_event, events.operation_done(finished)])
            note_finished(op.kind, None)

    def _announce(
        self,
        index: int,
        image: ImageRecord,
        news: list[events.Event],
        claimed: OperationRecord | None = None,
    ) -> None:
        self._announced.append((index, image, news, claimed))

    async def write(self) -> None:
        """Write what the common steps decided, and answer them."""
        if not self._announced:
            return
        if self._ready:
            await images.replace_many(self.conn, self._ready)
            await operations.finish_locked(self.conn, self._finished, self.now)
        recorded = [(image, news) for _, image, news, _ in self._announced]
        messages = iter(await events.record_locked(self.conn, recorded))
        for index, _, news, claimed in self._announced:
            mine = [next(messages) for _ in news]
            self.results[index] = Transition(applied=True, messages=mine, claimed=claimed)


async def run_together(conn: Connection, steps: Sequence[Step]) -> list[Transition]:
    """Run every step in the caller's transaction; their results, in the steps' order."""
    ids = [step.data.image_id for step in steps]
    steps_of_image = Counter(ids)
    operation_ids = [_operation_id(step.data) for step in steps]
    steps_of_operation = Counter(operation_ids)
    # Every image first, copies' sources included, in id order (the order the gateway locks
    # several images in).
    batch = _Batch(
        conn, await images.get_locked(conn, sorted(steps_of_image.keys() | _sources(steps)))
    )
    common = [
        i
        for i, (image_id, operation_id) in enumerate(zip(ids, operation_ids, strict=True))
        if steps_of_image[image_id] == steps_of_operation[operation_id] == 1
        and image_id in batch.locked
    ]
    await batch.start({i: steps[i].data for i in common if steps[i].transition is import_started})
    await batch.ready({i: steps[i].data for i in common if steps[i].transition is ready})
    await batch.write()
    for index in sorted(range(len(steps)), key=ids.__getitem__):
        if index in batch.results:
            continue
        step = steps[index]
        run = batch.lone.get(index) or partial(step.transition, conn, step.data)
        with structlog.contextvars.bound_contextvars(**step.context):
            batch.results[index] = await run()
    return [batch.results[index] for index in range(len(steps))]


def _operation_id(data: OfImage) -> str:
    """The operation a step of the common path works on ("" for the other steps)."""
    if isinstance(data, StartImport):
        return data.lease.operation_id
    return data.operation_id if isinstance(data, ImportDone) else ""


def _sources(steps: Sequence[Step]) -> set[str]:
    """The images that the batch's copies were made from, which their `ready` locks."""
    dones = (step.data for step in steps if isinstance(step.data, ImportDone))
    return {done.result.copied_from for done in dones if done.result.copied_from}
