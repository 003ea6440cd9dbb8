"""Cancel notices: the gateway tells every worker, over the fanout exchange `kiln.cancels`, that
an operation was asked to stop, so that the one running it looks now instead of at its next
lease renewal.

A notice is news of a change already committed, not a command (no queue, no redelivery) nor an
event (not a CloudEvent, nothing for subscribers): it decides nothing by itself, and one that is
lost only leaves the cancel to the renewal."""

import uuid

import msgspec

from contracts.names import CANCELS_EXCHANGE
from contracts.outbox_message import OutboxMessage

CANCEL_TYPE = "operation.cancel"


class CancelRequested(msgspec.Struct, frozen=True, kw_only=True):
    """The operation `operation_id` was asked to stop (a cancel, or a delete of its image)."""

    operation_id: str
    request_id: str = ""


notice_encoder = msgspec.json.Encoder()
notice_decoder = msgspec.json.Decoder(CancelRequested)


def cancel_notice(operation_id: str, request_id: str) -> OutboxMessage:
    """The outbox row carrying the notice; a new message id each time, as a second cancel of
    the same operation is a second notice."""
    notice = CancelRequested(operation_id=operation_id, request_id=request_id)
    return OutboxMessage(
        exchange=CANCELS_EXCHANGE,
        routing_key=CANCEL_TYPE,
        message_id=uuid.uuid4().hex,
        body=notice_encoder.encode(notice),
        type=CANCEL_TYPE,
        correlation_id=request_id,
    )
