"""A message written in the same transaction as the state change it reports."""

import msgspec


class OutboxMessage(msgspec.Struct, frozen=True, kw_only=True):
    """`seq` is assigned by the store; 0 until the row is written."""

    exchange: str
    routing_key: str
    message_id: str
    body: bytes
    content_type: str = "application/json"
    type: str = ""
    correlation_id: str = ""
    seq: int = 0
