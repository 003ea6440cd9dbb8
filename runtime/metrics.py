"""Every metric series Kiln exports: the operator's contract, as dashboards and alerts see it.

Defined once here (gateway and worker may both import contracts) in prometheus-client's default
registry, so `kiln dev`, one process, serves them all on one `/metrics`. Names follow the
Prometheus conventions: a `kiln_` prefix, the unit in the name, `_total` on counters.
"""

from prometheus_client import Counter, Gauge, Histogram

from contracts.errors import Code

MiB = 1 << 20

# Operation results (label `result`).
OK = "ok"
ERROR = "error"
CANCELLED = "cancelled"

HTTP_REQUESTS = Counter(
    "kiln_http_requests_total",
    "HTTP requests answered by the gateway, by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "kiln_http_request_duration_seconds",
    "Time from receiving a request to its response, by method, route template and status.",
    ["method", "route", "status"],
)
OPERATIONS_STARTED = Counter(
    "kiln_operations_started_total",
    "Operations accepted (not an Idempotency-Key replay), by kind.",
    ["kind"],
)
OPERATIONS_FINISHED = Counter(
    "kiln_operations_finished_total",
    "Operations finished, by kind and result (ok, error, cancelled), counted where they end.",
    ["kind", "result"],
)
IMPORT_SIZE = Histogram(
    "kiln_import_size_bytes",
    "Bytes stored by each finished import, by source kind (uri, disk, snapshot, image).",
    ["source"],
    buckets=[MiB * 4**n for n in range(10)],  # 1 MiB … 256 GiB
)
IMPORT_DURATION = Histogram(
    "kiln_import_duration_seconds",
    "Time one import attempt ran, by source kind and result.",
    ["source", "result"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
IMPORTS_IN_FLIGHT = Gauge(
    "kiln_imports_in_flight",
    "Imports this process is running now.",
)
REDELIVERIES = Counter(
    "kiln_message_redeliveries_total",
    "Commands delivered again (delivery count above 1), by queue.",
    ["queue"],
)
DEAD_LETTERED_MESSAGES = Counter(
    "kiln_dead_lettered_messages_total",
    "Commands that reached the dead-letter queue, by the queue they died in and why.",
    ["queue", "reason"],
)
DEPENDENCY_UNAVAILABLE = Counter(
    "kiln_dependency_unavailable_total",
    "Handler runs that found a dependency unavailable (the command waits for it), by dependency.",
    ["dependency"],
)
TEMPORARY_SWEPT = Counter(
    "kiln_temporary_files_swept_total",
    "Temporary blob files, objects and uploads that killed imports left, removed by the sweep.",
)
QUEUE_DEPTH = Gauge(
    "kiln_queue_depth_messages",
    "Messages ready in each Kiln queue, as the worker last saw them.",
    ["queue"],
)
OUTBOX_BACKLOG = Gauge(
    "kiln_outbox_backlog_messages",
    "Outbox rows not yet confirmed by the broker.",
)
OUTBOX_OLDEST_AGE = Gauge(
    "kiln_outbox_oldest_unsent_age_seconds",
    "Age of the oldest outbox row not yet confirmed by the broker (0 when none).",
)
RECONCILER_REDRIVES = Counter(
    "kiln_reconciler_redrives_total",
    "Operations whose lease ran out and whose command the reconciler published again, by kind.",
    ["kind"],
)


def operation_result(error_code: int | None) -> str:
    """The `result` label of an operation that ended with `error_code` (None: success)."""
    if error_code is None:
        return OK
    return CANCELLED if error_code == Code.CANCELLED else ERROR


def operation_finished(kind: str, error_code: int | None = None) -> None:
    OPERATIONS_FINISHED.labels(kind=kind, result=operation_result(error_code)).inc()
