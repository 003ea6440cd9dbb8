"""`kiln dev | gateway | worker`: every setting is a flag and a `KILN_*` variable.

The server (gateway, worker, store, bus) is imported by these commands only when they run:
the client commands and `--help` start without it."""

from collections.abc import Callable
from typing import Any

import click

from kiln.commands import KilnGroup
from kiln.settings import Settings, SettingsError, build, env_name

# (setting, help) for every option; each reads its KILN_<SETTING> variable too.
OPTIONS: list[tuple[str, str]] = [
    ("data_dir", "Directory for the embedded database and blobs (default ./.kiln)."),
    ("database_url", "sqlite:///path or postgresql://… (default: SQLite in the data dir)."),
    ("broker_url", "amqp://… for RabbitMQ, or memory:// (kiln dev's default)."),
    (
        "storage_url",
        "file:///path or s3://bucket/prefix for image blobs (default: blobs/ in the data dir).",
    ),
    ("http_host", "Address the gateway listens on (default 127.0.0.1)."),
    ("http_port", "Port the gateway listens on (default 8080)."),
    (
        "import_allowed_hosts",
        "Comma-separated hosts, addresses or CIDRs exempt from the private-address block;"
        " host:port or [IPv6]:port exempts that port only.",
    ),
    ("import_root", "Directory below which file:// image sources are allowed (default: none)."),
    ("import_max_bytes", "Largest image source accepted, in bytes (default 64 GiB)."),
    (
        "import_deadline_seconds",
        "Longest an import from an http(s) source may take, in seconds (default 21600: 6 h).",
    ),
    (
        "import_min_rate_bytes",
        "Slowest rate an http(s) source may send at, in bytes/s averaged over each minute"
        " after the first (default 65536; 0: no minimum).",
    ),
    (
        "disk_source_dir",
        "Directory of <folderId>/disks/<diskId> and <folderId>/snapshots/<snapshotId> files.",
    ),
    ("max_body_bytes", "Largest request body, in bytes (default 1 MiB)."),
    (
        "max_streams_per_subject",
        "Event streams one caller may hold open on a gateway at once (default 16).",
    ),
    (
        "http_header_timeout_seconds",
        "Seconds a connection has to send a request head, once open or after its previous"
        " response; idle keep-alive connections close after it too (default 15).",
    ),
    ("worker_prefetch", "Commands a worker runs at once (default 16)."),
    ("worker_fetches", "Imports a worker fetches at once; the others wait (default 16)."),
    (
        "worker_lease_seconds",
        "Lease of a running operation, renewed every third of it (default 30).",
    ),
    ("worker_reconcile_seconds", "How often a worker re-drives stalled operations (default 15)."),
    (
        "dependency_deadline_seconds",
        "How long a command waits for an unavailable database or blob store (default 600).",
    ),
    ("log_format", "console or json (default: console for dev, json otherwise)."),
    (
        "worker_http_port",
        "Port of a worker's /metrics, /healthz, /readyz (default 9090; 0: none; kiln dev: none).",
    ),
    (
        "shutdown_grace_seconds",
        "Seconds between readiness turning false and the gateway closing (default 0).",
    ),
    (
        "startup_timeout_seconds",
        "Seconds start-up waits for the database and the broker to answer (default 60).",
    ),
    ("s3_endpoint_url", "S3-compatible endpoint, e.g. http://minio:9000 (default: AWS)."),
    ("s3_region", "Region of the S3 bucket (default us-east-1)."),
    ("s3_access_key_id", "S3 access key id (default: botocore's credential chain)."),
    ("s3_secret_access_key", "S3 secret access key (default: botocore's credential chain)."),
    ("s3_addressing_style", "path or virtual S3 addressing (default path)."),
    ("s3_part_size", "Bytes per multipart upload part, 5 MiB to 5 GiB (default 8 MiB)."),
    (
        "token_secret",
        "Secret (32+ characters) that signs HS256 bearer tokens; kiln dev without one makes"
        " one in the data dir.",
    ),
    ("jwks_url", "JWKS URL of an OIDC provider; its RS256/ES256 tokens are accepted."),
    ("jwt_audience", "Audience every token's aud must name (default: not checked)."),
    ("jwt_issuer", "Issuer every token's iss must be (default: not checked)."),
    ("admins", "Comma-separated subject ids that are admins of every folder."),
]


def settings_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for name, help_text in reversed(OPTIONS):
        flag = "--" + name.replace("_", "-")
        command = click.option(flag, name, envvar=env_name(name), default=None, help=help_text)(
            command
        )
    return command


def _settings(values: dict[str, Any], **defaults: Any) -> Settings:
    try:
        return build(values, **defaults)
    except SettingsError as exc:
        raise click.UsageError(f"bad setting {exc}") from None


@click.group(cls=KilnGroup)
def main() -> None:
    """Kiln: a self-hosted, event-driven Compute Cloud Image API."""


@main.command()
@settings_options
def dev(**values: Any) -> None:
    """Gateway and workers in one process on SQLite and an in-process bus."""
    from kiln import runtime

    settings = _settings(values, broker_url="memory://", log_format="console")
    runtime.run(runtime.run_dev(settings))


@main.command()
@settings_options
def gateway(**values: Any) -> None:
    """The HTTP API only (run workers with `kiln worker`)."""
    from kiln import runtime

    settings = _settings(values)
    runtime.require_shared(settings)
    runtime.require_auth(settings)
    runtime.run(runtime.run_gateway(settings))


@main.command()
@settings_options
def worker(**values: Any) -> None:
    """A worker: consumes commands, imports images, re-drives stalled operations."""
    from kiln import runtime

    settings = _settings(values)
    runtime.require_shared(settings)
    runtime.run(runtime.run_worker(settings))
