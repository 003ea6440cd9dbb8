"""Typed application state: every piece the handlers share, one AppKey each."""

from aiohttp import web

from bus.base import Bus
from gateway.pagination import PageTokens
from gateway.settings import GatewaySettings
from store.db import Database

DB = web.AppKey("db", Database)
BUS = web.AppKey("bus", Bus)
PAGE_TOKENS = web.AppKey("page_tokens", PageTokens)
SETTINGS = web.AppKey("settings", GatewaySettings)
