"""The settings of `kiln dev | gateway | worker` as options: one declaration of every option
(each reads its KILN_* variable too) with the commands that use it, and the one-line error
that names a setting the way it was given: its flag, its variable, or both if neither."""

from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import click
from click.core import ParameterSource

from kiln.settings import SettingsError, both_names, env_name, flag_name

F = TypeVar("F", bound=Callable[..., Any])
DEV, GATEWAY, WORKER = "dev", "gateway", "worker"
EVERY = frozenset({DEV, GATEWAY, WORKER})
SERVING = frozenset({DEV, GATEWAY})  # the HTTP API's settings
IMPORTING = frozenset({DEV, WORKER})  # the workers' settings


class Option(NamedTuple):
    setting: str
    commands: frozenset[str]
    help: str


OPTIONS: list[Option] = [
    Option("data_dir", EVERY, "Directory for the embedded database and blobs (default ./.kiln)."),
    Option(
        "database_url",
        EVERY,
        "sqlite:///path or postgresql://… (default: SQLite in the data dir).",
    ),
    Option("broker_url", EVERY, "amqp://… for RabbitMQ, or memory:// (kiln dev's default)."),
    Option(
        "storage_url",
        IMPORTING,
        "file:///path or s3://bucket/prefix for image blobs (default: blobs/ in the data dir).",
    ),
    Option(
        "http_host",
        EVERY,
        "Address the gateway, or a worker's side port, listens on (default 127.0.0.1).",
    ),
    Option("http_port", SERVING, "Port the gateway listens on (default 8080)."),
    Option(
        "import_allowed_hosts",
        EVERY,
        "Comma-separated hosts, addresses or CIDRs exempt from the private-address block;"
        " host:port or [IPv6]:port exempts that port only.",
    ),
    Option(
        "import_root",
        EVERY,
        "Directory below which file:// image sources are allowed (default: none).",
    ),
    Option(
        "import_max_bytes", IMPORTING, "Largest image source accepted, in bytes (default 64 GiB)."
    ),
    Option(
        "import_deadline_seconds",
        IMPORTING,
        "Longest an import from an http(s) source may take, in seconds (default 21600: 6 h).",
    ),
    Option(
        "import_min_rate_bytes",
        IMPORTING,
        "Slowest rate an http(s) source may send at, in bytes/s averaged over each minute"
        " after the first (default 65536; 0: no minimum).",
    ),
    Option(
        "disk_source_dir",
        EVERY,
        "Directory of <folderId>/disks/<diskId> and <folderId>/snapshots/<snapshotId> files.",
    ),
    Option("max_body_bytes", SERVING, "Largest request body, in bytes (default 1 MiB)."),
    Option(
        "max_streams_per_subject",
        SERVING,
        "Event streams one caller may hold open on a gateway at once (default 16).",
    ),
    Option(
        "http_header_timeout_seconds",
        SERVING,
        "Seconds a connection has to send a request head, once open or after its previous"
        " response; idle keep-alive connections close after it too (default 15).",
    ),
    Option("worker_prefetch", IMPORTING, "Commands a worker runs at once (default 16)."),
    Option(
        "worker_fetches",
        IMPORTING,
        "Imports a worker fetches at once; the others wait (default 16).",
    ),
    Option(
        "worker_lease_seconds",
        IMPORTING,
        "Lease of a running operation, renewed every third of it (default 30).",
    ),
    Option(
        "worker_reconcile_seconds",
        IMPORTING,
        "How often a worker re-drives stalled operations (default 15).",
    ),
    Option(
        "dependency_deadline_seconds",
        IMPORTING,
        "How long a command waits for an unavailable database or blob store (default 600).",
    ),
    Option("log_format", EVERY, "console or json (default: console for dev, json otherwise)."),
    Option(
        "worker_http_port",
        frozenset({WORKER}),
        "Port of this worker's /metrics, /healthz, /readyz (default 9090, or a free port when"
        " 9090 is taken; 0: none).",
    ),
    Option(
        "shutdown_grace_seconds",
        SERVING,
        "Seconds between readiness turning false and the gateway closing (default 0).",
    ),
    Option(
        "startup_timeout_seconds",
        EVERY,
        "Seconds start-up waits for the database and the broker to answer (default 60).",
    ),
    Option(
        "s3_endpoint_url",
        IMPORTING,
        "S3-compatible endpoint, e.g. http://minio:9000 (default: AWS).",
    ),
    Option("s3_region", IMPORTING, "Region of the S3 bucket (default us-east-1)."),
    Option(
        "s3_access_key_id", IMPORTING, "S3 access key id (default: botocore's credential chain)."
    ),
    Option(
        "s3_secret_access_key",
        IMPORTING,
        "S3 secret access key (default: botocore's credential chain).",
    ),
    Option("s3_addressing_style", IMPORTING, "path or virtual S3 addressing (default path)."),
    Option(
        "s3_part_size",
        IMPORTING,
        "Bytes per multipart upload part, 5 MiB to 5 GiB (default 8 MiB).",
    ),
    Option(
        "token_secret",
        SERVING,
        "Secret (32+ characters) that signs HS256 bearer tokens; kiln dev without one makes"
        " one in the data dir.",
    ),
    Option(
        "jwks_url", SERVING, "JWKS URL of an OIDC provider; its RS256/ES256 tokens are accepted."
    ),
    Option("jwt_audience", SERVING, "Audience every token's aud must name (default: not checked)."),
    Option("jwt_issuer", SERVING, "Issuer every token's iss must be (default: not checked)."),
    Option("admins", SERVING, "Comma-separated subject ids that are admins of every folder."),
]


def settings_options(command_name: str) -> Callable[[F], F]:
    """The options of the settings `command_name` uses, in the order declared."""

    def decorate(command: F) -> F:
        for option in reversed(OPTIONS):
            if command_name in option.commands:
                name, envvar = option.setting, env_name(option.setting)
                flag = click.option(flag_name(name), name, envvar=envvar, help=option.help)
                command = flag(command)
        return command

    return decorate


class BadSetting(click.ClickException):
    """`Error: bad setting NAME: why` in one line, exit 2 (as click's own usage errors)."""

    exit_code = 2


def named(ctx: click.Context, setting: str) -> str:
    """The setting as the command line was given it: flag, variable, or both if neither."""
    source = ctx.get_parameter_source(setting)
    if source is ParameterSource.COMMANDLINE:
        return flag_name(setting)
    if source is ParameterSource.ENVIRONMENT:
        return env_name(setting)
    return both_names(setting)


def bad_setting(ctx: click.Context, error: SettingsError) -> BadSetting:
    if not error.field:
        return BadSetting(f"bad setting: {error.detail}")
    return BadSetting(f"bad setting {named(ctx, error.field)}: {error.detail}")
