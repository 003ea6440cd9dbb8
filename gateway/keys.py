"""Typed application state: every piece the handlers share, one AppKey each."""

import asyncio

from aiohttp import web

from api.create_batches import PendingCreate
from api.group_commit import GroupCommit
from api.pagination import PageTokens
from api.services import Services
from api.settings import GatewaySettings
from api.update_batches import PendingUpdate
from bus.base import Bus
from bus.outbox_publisher import OutboxPublisher
from gateway.auth.bearer_tokens import TokenVerifier
from gateway.events.sse_caller import StreamSlots
from gateway.events.sse_wakeups import StreamWakeups
from store.db import Database
from store.event_log_sequencer import EventSequencer

DB = web.AppKey("db", Database)
BUS = web.AppKey("bus", Bus)
PAGE_TOKENS = web.AppKey("page_tokens", PageTokens)
SETTINGS = web.AppKey("settings", GatewaySettings)
PUBLISHER = web.AppKey("publisher", OutboxPublisher)
CREATES = web.AppKey("creates", GroupCommit[PendingCreate])
UPDATES = web.AppKey("updates", GroupCommit[PendingUpdate])
SERVICES = web.AppKey("services", Services)  # what the API's write methods run on
TOKENS = web.AppKey("tokens", TokenVerifier)
# Set when shutdown starts: readiness fails at once, before anything stops.
DRAINING = web.AppKey("draining", asyncio.Event)
STREAM_WAKEUPS = web.AppKey("stream_wakeups", StreamWakeups)
SEQUENCER = web.AppKey("sequencer", EventSequencer)
STREAM_SLOTS = web.AppKey("stream_slots", StreamSlots)
