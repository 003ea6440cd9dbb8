"""The worker's settings: one typed object, built once by the caller and passed down."""

from pathlib import Path

import msgspec

from worker.importing.fetch import FetchPolicy
from worker.outages import DEFAULT_DEADLINE

GiB = 1 << 30


class WorkerConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Times are seconds.

    `prefetch` is how many commands a worker runs at once (more after RabbitMQ closed its
    channel under running imports: those go on, and the new channel brings new commands, see
    bus/rabbit_consumer.py); `fetches` how many of their imports fetch and store bytes at
    once (each holds a few MB while it does on the file store, an 8 MiB part on S3); with
    `fetches` below `prefetch` the others wait their turn, leased.
    `lease_seconds` is how long a running operation's lease lasts, renewed every `renew_every`
    (which is also how quickly a running import notices a cancel whose notice was lost,
    worker/cancels.py). `pending_grace` is how long a re-published command may wait for a
    worker before the reconciler re-drives it again.
    `relay_after` is how old an unsent outbox row must be before the relay publishes it.
    `dependency_deadline` is how long a command waits for an unavailable database or blob store
    before it is given up (worker/outages.py).
    `deadline` and `min_rate` (bytes/s) end an http(s) fetch that takes too long
    (worker/importing/pace.py).
    """

    worker_id: str
    blob_root: Path
    allowed_hosts: tuple[str, ...] = ()
    import_root: Path | None = None
    max_bytes: int = 256 * GiB
    disk_source_dir: Path | None = None
    idle_timeout: float = 30.0
    deadline: float = 6 * 3600.0
    min_rate: int = 64 * 1024
    fetch_retries: int = 3
    prefetch: int = 16
    fetches: int = 16
    lease_seconds: float = 30.0
    renew_every: float = 10.0
    pending_grace: float = 300.0
    reconcile_every: float = 15.0
    relay_every: float = 2.0
    relay_after: float = 5.0
    dependency_deadline: float = DEFAULT_DEADLINE

    def __post_init__(self) -> None:
        if self.renew_every >= self.lease_seconds:
            raise ValueError(
                f"renew_every ({self.renew_every} s) must be shorter than"
                f" lease_seconds ({self.lease_seconds} s)"
            )
        if self.prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {self.prefetch}")
        if self.fetches < 1:
            raise ValueError(f"fetches must be at least 1, got {self.fetches}")

    def fetch_policy(self) -> FetchPolicy:
        """The limits of one fetch from an image source."""
        return FetchPolicy(
            max_bytes=self.max_bytes,
            allowed_hosts=self.allowed_hosts,
            import_root=self.import_root,
            idle_timeout=self.idle_timeout,
            deadline=self.deadline,
            min_rate=self.min_rate,
            retries=self.fetch_retries,
        )


def seconds_us(seconds: float) -> int:
    """Seconds as the store's integer microseconds."""
    return int(seconds * 1_000_000)
