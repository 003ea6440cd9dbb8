"""After a transaction commits, publish its outbox rows at once."""

from collections.abc import Sequence

from aiohttp import web

from contracts.outbox_message import OutboxMessage
from gateway.keys import PUBLISHER


async def publish_committed(app: web.Application, messages: Sequence[OutboxMessage]) -> None:
    """Best effort: rows the broker did not confirm stay unsent and the relay retries them.
    The caller's operation is already durable, so a broker outage never fails the request."""
    await app[PUBLISHER].publish(messages)
