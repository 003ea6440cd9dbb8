"""Times are stored as integer microseconds since the epoch (UTC) on both backends."""

import datetime as dt
import time


def now_us() -> int:
    return time.time_ns() // 1000


def to_datetime(micros: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(micros / 1_000_000, tz=dt.timezone.utc)
