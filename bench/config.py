"""The two profiles of a run: the full one (the issue's counts) and `--quick` (< 2 minutes)."""

import msgspec

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30


class Profile(msgspec.Struct, frozen=True, kw_only=True):
    """Every count, size and bound a scenario uses; nothing else varies between the profiles."""

    name: str
    runs: int  # measured runs of each side (floor, Kiln, peer); medians over these
    # create rate
    create_count: int
    create_warmup: int
    create_concurrency: int = 64
    peer_register_count: int
    peer_describe_count: int
    # small-image imports
    small_count: int
    small_size: int = 256 * KiB
    mib_count: int  # the 1 MiB variant
    import_workers: int = 2
    worker_prefetch: int = 16  # Kiln's defaults; the floor runs at workers × fetches
    worker_fetches: int = 16
    # large-image import
    large_sizes: tuple[int, ...]
    # read path
    pg_images: int
    sqlite_images: int
    read_count: int  # requests per latency measurement (one connection)
    read_throughput_count: int  # get requests at create_concurrency connections
    # events
    event_rate: int = 500
    event_count: int
    # every load generator stops at its count or after this many seconds, whichever is first
    load_deadline: float
    import_deadline: float  # from the first POST of an import run until all are READY
    scenario_timeout: float


FULL = Profile(
    name="full",
    runs=3,
    create_count=10_000,
    create_warmup=500,
    peer_register_count=3_000,
    peer_describe_count=3_000,
    small_count=5_000,
    mib_count=2_000,
    large_sizes=(2 * GiB, 4 * GiB),
    pg_images=1_000_000,
    sqlite_images=100_000,
    read_count=2_000,
    read_throughput_count=10_000,
    event_count=10_000,
    load_deadline=240.0,
    import_deadline=600.0,
    scenario_timeout=1500.0,
)

QUICK = Profile(
    name="quick",
    runs=1,
    create_count=2_000,
    create_warmup=200,
    peer_register_count=500,
    peer_describe_count=500,
    small_count=400,
    mib_count=200,
    large_sizes=(2 * GiB,),
    pg_images=50_000,
    sqlite_images=100_000,
    read_count=300,
    read_throughput_count=2_000,
    event_count=1_500,
    load_deadline=30.0,
    import_deadline=60.0,
    scenario_timeout=90.0,
)
