"""Times are integer microseconds since the epoch (UTC), on the database's clock.

Gateways and workers on several hosts compare each other's timestamps (leases and their
expiry, outbox ages, retention), so they must not each trust their own clock: every process
keeps the offset of its clock from the database's (measured by `store/clock_sync.py` when it
opens the store and again every half-minute), and `now_us` adds it. A worker whose clock runs
minutes fast or slow then takes, renews and judges leases on the same time line as every other."""

import datetime as dt
import time

_offset_us = 0


def now_us() -> int:
    """The database's time now, in microseconds since the epoch."""
    return local_us() + _offset_us


def to_datetime(micros: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(micros / 1_000_000, tz=dt.timezone.utc)


def offset_us() -> int:
    """How far the database's clock is ahead of this host's."""
    return _offset_us


def set_offset_us(offset: int) -> None:
    global _offset_us
    _offset_us = offset


def local_us() -> int:
    """This host's own clock."""
    return time.time_ns() // 1000
