"""The dead-letter consumer: a command that kept failing ends its operation in ERROR, so a
poison message stops in the dead-letter queue instead of looping and no image stays
CREATING or DELETING because of it."""

import msgspec
import structlog

from bus.base import Delivery
from contracts.commands import Command, command_decoder
from contracts.errors import Code
from lifecycle.changes import OperationFailed
from runtime.metrics import DEAD_LETTERED_MESSAGES
from worker.committer import Committer

log = structlog.get_logger(__name__)

DEAD_LETTERED = "command failed repeatedly and was dead-lettered"
_PREVIEW = 200  # bytes of an undecodable body kept in the log


class DeadLetterHandler:
    def __init__(self, commit: Committer) -> None:
        self._commit = commit

    async def __call__(self, delivery: Delivery, command: Command | None) -> None:
        origin = {
            "dead_letter_queue": delivery.headers.get("x-first-death-queue", ""),
            "dead_letter_reason": delivery.headers.get("x-first-death-reason", ""),
            "message_id": delivery.message_id,
        }
        if delivery.delivery_count == 1:  # not again when this handler's own run failed
            queue, reason = origin["dead_letter_queue"], origin["dead_letter_reason"]
            DEAD_LETTERED_MESSAGES.labels(queue=queue, reason=reason).inc()
        if command is None:
            # Nothing to end: the log keeps what arrived and why it is no command, for an
            # operator (decoded again: a poison message is rare).
            log.error(
                "dead_letter.undecodable",
                error=_decode_error(delivery.body),
                body=delivery.body[:_PREVIEW].decode("utf-8", "replace"),
                **origin,
            )
            return
        failure = OperationFailed(
            operation_id=command.operation_id,
            image_id=command.image_id,
            code=int(Code.INTERNAL),
            message=DEAD_LETTERED,
        )
        result = await self._commit(failure)
        log.error("dead_letter.settled", applied=result.applied, **origin)


def _decode_error(body: bytes) -> str:
    try:
        command_decoder.decode(body)
    except msgspec.DecodeError as exc:
        return str(exc)
    return ""
