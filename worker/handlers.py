"""Command handlers: carry out a create or a delete once, under a lease, however often the
command is delivered."""

from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec
import structlog
import tenacity

from bus.base import Delivery, Handler, Reject, Retry
from bus.topology import DELIVERY_LIMIT
from contracts.commands import (
    Command,
    CreateImage,
    CreateParams,
    DeleteImage,
    command_decoder,
    create_params_decoder,
)
from contracts.errors import Code
from lifecycle.changes import (
    CancelImport,
    ImportDone,
    Imported,
    OperationFailed,
    ReleaseImage,
    StartImport,
)
from runtime.metrics import REDELIVERIES
from store import operations
from store.db import Database, StoreError, StoreUnavailable
from store.operations import OperationRecord
from worker.blobs import BlobStore
from worker.cancels import CancelNotices
from worker.committer import BytesReleased, Committer
from worker.config import WorkerConfig
from worker.errors import ImportRefused, SourceUnavailable
from worker.importing.disk_sources import DiskSource
from worker.importing.importer import Importer
from worker.leases import Interruption, LeaseKeeper
from worker.metrics import ImportAttempt
from worker.outages import STORE, DependencyDeadline, Outages

log = structlog.get_logger(__name__)

C = TypeVar("C", bound=Command)
# Handles a delivery and the command it carries (None: its body is not a command).
CommandHandler = Callable[[Delivery, Command | None], Awaitable[None]]


def consuming(queue: str, handler: CommandHandler) -> Handler:
    """`handler` as a consumer of `queue`: each delivery's command decoded once, its
    redeliveries counted, and the command's request, operation and image ids bound to every
    line logged while it is handled.

    The ids stay bound after `handler` returns, so the bus runner's own lines about the outcome
    (retry, reject, failure) carry them too: both transports handle each delivery in a task of
    its own, whose context ends with it.
    """

    async def handle(delivery: Delivery) -> None:
        if delivery.delivery_count > 1:
            REDELIVERIES.labels(queue=queue).inc()
        command = _decoded(delivery)
        if command is not None:
            structlog.contextvars.bind_contextvars(
                request_id=command.request_id or delivery.correlation_id or "",
                operation_id=command.operation_id,
                image_id=command.image_id,
            )
        await handler(delivery, command)

    return handle


def _decoded(delivery: Delivery) -> Command | None:
    try:
        return command_decoder.decode(delivery.body)
    except msgspec.DecodeError:
        return None


def expected(command: Command | None, kind: type[C]) -> C:
    """The command, if it is a `kind`; anything else is rejected (dead-lettered)."""
    if not isinstance(command, kind):
        got = "an undecodable body" if command is None else type(command).__name__
        raise Reject(f"expected {kind.__name__}, got {got}")
    return command


class CommandHandlers:
    def __init__(
        self,
        db: Database,
        commit: Committer,
        config: WorkerConfig,
        blobs: BlobStore,
        disks: DiskSource | None,
        notices: CancelNotices,
    ) -> None:
        self._db = db
        self._leases = LeaseKeeper(db, config, notices)
        self._commit = commit
        self._outages = Outages(config.dependency_deadline, blobs.writable)
        self._lease_seconds = config.lease_seconds
        self._importer = Importer(db, blobs, config.fetch_policy(), disks, config.fetches)

    async def close(self) -> None:
        """Close the keep-alive HTTP session of the imports."""
        await self._importer.close()

    async def handle_create(self, delivery: Delivery, command: Command | None) -> None:
        create = expected(command, CreateImage)
        try:
            await self._outages.outlast(lambda: self._start(create, delivery.delivery_count))
        except DependencyDeadline as exc:
            await self._give_up(create, exc)

    async def handle_delete(self, delivery: Delivery, command: Command | None) -> None:
        delete = expected(command, DeleteImage)
        try:
            await self._outages.outlast(lambda: self._delete(delete))
        except DependencyDeadline as exc:
            await self._give_up(delete, exc)

    async def _start(self, command: CreateImage, deliveries: int) -> None:
        lease = self._leases.new(command.operation_id)
        started = await self._commit(StartImport(image_id=command.image_id, lease=lease))
        op = started.claimed
        if op is None:
            await self._unclaimed(command)
            return
        if started.cancelled:
            return
        finished = False
        try:
            finished = await self._create(command, op, deliveries)
        finally:
            if not finished:
                await self._give_back(op.id)

    async def _delete(self, command: DeleteImage) -> None:
        op = await self._claim(command)
        if op is None:
            return
        try:
            request = ReleaseImage(operation_id=op.id, image_id=command.image_id)
            result = await self._commit(request)
            log.info("image.deleted", applied=result.applied, released=result.release)
        finally:
            await self._give_back(op.id)

    async def _give_up(self, command: Command, outage: DependencyDeadline) -> None:
        """End the operation in ERROR naming the dependency; with the database down, there is
        nowhere to write that: the command goes back to its queue (one delivery per deadline)."""
        if outage.dependency == STORE:
            raise Retry(str(outage)) from outage
        failure = OperationFailed(
            operation_id=command.operation_id,
            image_id=command.image_id,
            code=int(Code.UNAVAILABLE),
            message=str(outage),
        )
        await self._commit(failure)

    async def _claim(self, command: Command) -> OperationRecord | None:
        """The command's operation, leased to us; None when there is nothing to do here."""
        claimed = await self._leases.take(command.operation_id)
        if claimed is None:
            await self._unclaimed(command)
        return claimed

    async def _unclaimed(self, command: Command) -> None:
        """Log why a command's operation could not be claimed (a read, only to say why)."""
        async with self._db.transaction() as conn:
            op = await operations.get(conn, command.operation_id)
        if op is None:
            log.warning("command.unknown_operation")
        elif op.done:
            log.info("command.already_done")
        else:
            # A live worker carries it out; if that worker dies the reconciler re-drives it.
            log.info("command.lease_held")

    async def _create(self, command: CreateImage, op: OperationRecord, deliveries: int) -> bool:
        """True when the operation ended here (no lease to give back)."""
        ids = {"operation_id": op.id, "image_id": command.image_id}
        try:
            params = _params(op)
            with ImportAttempt(params.source) as attempt:
                work = self._importer.run(params, op.folder_id)
                outcome = attempt.outcome(await self._leases.hold(op.id, work))
        except ImportRefused as exc:
            refused = OperationFailed(**ids, code=int(exc.code), message=exc.message)
            await self._commit(refused)
            return True
        except SourceUnavailable as exc:
            unavailable = OperationFailed(**ids, code=int(Code.UNAVAILABLE), message=str(exc))
            await self._retry_or_fail(unavailable, deliveries)
            return True
        if outcome is Interruption.CANCELLED:
            await self._commit(CancelImport(**ids))
            return True
        if isinstance(outcome, Imported):
            try:
                done = ImportDone(**ids, result=outcome)
                result = await self._commit(done, uses=outcome.digest)
            except BytesReleased as exc:
                raise Retry("the stored bytes were released by a concurrent delete") from exc
            log.info("image.import_settled", ready=result.applied and not result.cancelled)
            return result.applied
        return False

    async def _retry_or_fail(self, failure: OperationFailed, deliveries: int) -> None:
        """Redeliver the command while deliveries remain; on the last one, end in ERROR."""
        if deliveries <= DELIVERY_LIMIT:
            raise Retry(failure.message)
        message = f"source unavailable after {deliveries} attempts: {failure.message}"
        await self._commit(msgspec.structs.replace(failure, message=message))

    async def _give_back(self, operation_id: str) -> None:
        """Release the lease of an operation we leave open (no-op once it is done), retried
        while the database is away for as long as the lease lasts: after that it ran out, and
        the command run again (or the reconciler) can take it anyway."""
        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_delay(self._lease_seconds),
            wait=tenacity.wait_exponential(multiplier=0.2, max=5),
            retry=tenacity.retry_if_exception_type(StoreUnavailable),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self._leases.give_back(operation_id)
        except StoreError as exc:
            log.warning("lease.release_failed", error=str(exc))


def _params(op: OperationRecord) -> CreateParams:
    try:
        return create_params_decoder.decode(op.params)
    except msgspec.DecodeError as exc:
        message = f"the create's stored parameters are invalid: {exc}"
        raise ImportRefused(Code.INTERNAL, message) from exc
