"""structlog set-up: readable console lines in `kiln dev`, JSON lines in production."""

import logging
from typing import Any

import orjson
import structlog


def _json(event: Any, **_: Any) -> str:
    return orjson.dumps(event, default=str).decode()


def configure(log_format: str, level: int = logging.INFO) -> None:
    renderer: Any = (
        structlog.dev.ConsoleRenderer()
        if log_format == "console"
        else structlog.processors.JSONRenderer(serializer=_json)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
