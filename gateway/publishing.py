"""After a transaction commits, publish its outbox rows at once and mark them sent."""

from collections.abc import Sequence

import structlog
from aiohttp import web

from bus.base import BusUnavailable
from bus.outbox import publish_outbox
from contracts.outbox import OutboxMessage
from gateway.keys import BUS, DB
from store import outbox
from store.clock import now_us

log = structlog.get_logger(__name__)


async def publish_committed(app: web.Application, messages: Sequence[OutboxMessage]) -> None:
    """Best effort: rows the broker did not confirm stay unsent and the relay retries them.
    The caller's operation is already durable, so a broker outage never fails the request."""
    if not messages:
        return
    try:
        await publish_outbox(app[BUS], messages)
    except BusUnavailable as exc:
        log.warning("outbox publish deferred to the relay", error=str(exc), rows=len(messages))
        return
    async with app[DB].transaction() as conn:
        await outbox.mark_sent(conn, [message.seq for message in messages], now_us())
