"""Settings: one typed object built once from `KILN_*` variables and command-line flags. Each
setting is declared once, as a field of `Settings`: its type and bounds, its default, the
commands that take it and its help; the flags, their variables and the checks derive from it."""

import contextlib
import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, get_args, get_type_hints

import msgspec
from yarl import URL

from runtime.broker_urls import BrokerUrlError, broker_nodes
from runtime.urls import allowed_entry

# S3's part sizes: all but the last part of an upload at least 5 MiB, none over 5 GiB (the
# worker's S3 store checks the same; plain numbers here, so settings load without it).
S3_MIN_PART = 5 << 20
S3_MAX_PART = 5 << 30
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
OptionalPort = Annotated[int, msgspec.Meta(ge=0, le=65535)]  # 0: not served
Positive = Annotated[int, msgspec.Meta(ge=1)]
Seconds = Annotated[float, msgspec.Meta(ge=0)]
PartSize = Annotated[int, msgspec.Meta(ge=S3_MIN_PART, le=S3_MAX_PART)]


DEV, GATEWAY, WORKER = "dev", "gateway", "worker"
EVERY = frozenset({DEV, GATEWAY, WORKER})
SERVING = frozenset({DEV, GATEWAY})  # the HTTP API's settings
IMPORTING = frozenset({DEV, WORKER})  # the workers' settings
WORKER_ONLY = frozenset({WORKER})


class Flag(NamedTuple):
    """How a setting is offered on the command line (kiln/flags.py): the commands that take
    it and its --help text. It sits in the field's Annotated type, where msgspec ignores it."""

    commands: frozenset[str]
    help: str


class SettingsError(Exception):
    """A setting is missing or malformed, or cannot work: which one (a Settings field) and why.
    The message names its variable; the command line names it as it was given."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{env_name(field)}: {detail}" if field else detail)
        self.field = field
        self.detail = detail


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    data_dir: Annotated[
        Path, Flag(EVERY, "Directory for the embedded database and blobs (default ./.kiln).")
    ] = Path(".kiln")
    database_url: Annotated[
        str, Flag(EVERY, "sqlite:///path or postgresql://… (default: SQLite in the data dir).")
    ] = ""
    broker_url: Annotated[
        str,
        Flag(
            EVERY,
            "amqp://… for RabbitMQ, or memory:// (kiln dev's default); a cluster's nodes as"
            " amqp://user:pass@node1:5672,node2:5672/vhost.",
        ),
    ] = ""
    broker_quorum_size: Annotated[
        Annotated[int, msgspec.Meta(ge=1, le=99)],
        Flag(
            EVERY,
            "Nodes each quorum queue is replicated on when Kiln first declares it (default 3;"
            " a smaller cluster gives every node).",
        ),
    ] = 3
    storage_url: Annotated[
        str,
        Flag(
            IMPORTING,
            "file:///path or s3://bucket/prefix for image blobs (default: blobs/ in the data dir).",
        ),
    ] = ""
    http_host: Annotated[
        str,
        Flag(
            EVERY, "Address the gateway, or a worker's side port, listens on (default 127.0.0.1)."
        ),
    ] = "127.0.0.1"
    http_port: Annotated[Port, Flag(SERVING, "Port the gateway listens on (default 8080).")] = 8080
    import_allowed_hosts: Annotated[
        tuple[str, ...],
        Flag(
            EVERY,
            "Comma-separated hosts, addresses or CIDRs exempt from the private-address "
            "block; host:port or [IPv6]:port exempts that port only.",
        ),
    ] = ()
    import_root: Annotated[
        Path | None,
        Flag(EVERY, "Directory below which file:// image sources are allowed (default: none)."),
    ] = None
    import_max_bytes: Annotated[
        Positive, Flag(IMPORTING, "Largest image source accepted, in bytes (default 64 GiB).")
    ] = 64 * 1024**3
    import_deadline_seconds: Annotated[
        Annotated[float, msgspec.Meta(gt=0)],
        Flag(
            IMPORTING,
            "Longest an import from an http(s) source may take, in seconds (default 21600: 6 h).",
        ),
    ] = 6 * 3600.0
    import_min_rate_bytes: Annotated[
        Annotated[int, msgspec.Meta(ge=0)],
        Flag(
            IMPORTING,
            "Slowest rate an http(s) source may send at, in bytes/s averaged over each "
            "minute after the first (default 65536; 0: no minimum).",
        ),
    ] = 64 * 1024
    disk_source_dir: Annotated[
        Path | None,
        Flag(
            EVERY,
            "Directory of <folderId>/disks/<diskId> and <folderId>/snapshots/<snapshotId> files.",
        ),
    ] = None
    max_body_bytes: Annotated[
        Positive, Flag(SERVING, "Largest request body, in bytes (default 1 MiB).")
    ] = 1024 * 1024
    max_streams_per_subject: Annotated[
        Positive,
        Flag(SERVING, "Event streams one caller may hold open on a gateway at once (default 16)."),
    ] = 16
    http_header_timeout_seconds: Annotated[
        Annotated[float, msgspec.Meta(gt=0)],
        Flag(
            SERVING,
            "Seconds a connection has to send a request head, once open or after its "
            "previous response; idle keep-alive connections close after it too (default "
            "15).",
        ),
    ] = 15.0
    worker_prefetch: Annotated[
        Positive, Flag(IMPORTING, "Commands a worker runs at once (default 16).")
    ] = 16
    worker_fetches: Annotated[
        Positive, Flag(IMPORTING, "Imports a worker fetches at once; the others wait (default 16).")
    ] = 16
    worker_lease_seconds: Annotated[
        Annotated[float, msgspec.Meta(gt=0)],
        Flag(IMPORTING, "Lease of a running operation, renewed every third of it (default 30)."),
    ] = 30.0
    worker_reconcile_seconds: Annotated[
        Annotated[float, msgspec.Meta(gt=0)],
        Flag(IMPORTING, "How often a worker re-drives stalled operations (default 15)."),
    ] = 15.0
    dependency_deadline_seconds: Annotated[
        Annotated[float, msgspec.Meta(gt=0)],
        Flag(
            IMPORTING,
            "How long a command waits for an unavailable database or blob store (default 600).",
        ),
    ] = 600.0
    log_format: Annotated[
        Literal["console", "json"],
        Flag(EVERY, "console or json (default: console for dev, json otherwise)."),
    ] = "json"
    worker_http_port: Annotated[
        OptionalPort | None,
        Flag(
            WORKER_ONLY,
            "Port of this worker's /metrics, /healthz, /readyz (default 9090, or a free "
            "port when 9090 is taken; 0: none).",
        ),
    ] = None  # None: 9090, or a free port if 9090 is taken
    shutdown_grace_seconds: Annotated[
        Seconds,
        Flag(
            SERVING, "Seconds between readiness turning false and the gateway closing (default 0)."
        ),
    ] = 0.0
    startup_timeout_seconds: Annotated[
        Seconds,
        Flag(
            EVERY, "Seconds start-up waits for the database and the broker to answer (default 60)."
        ),
    ] = 60.0
    s3_endpoint_url: Annotated[
        str, Flag(IMPORTING, "S3-compatible endpoint, e.g. http://minio:9000 (default: AWS).")
    ] = ""
    s3_region: Annotated[str, Flag(IMPORTING, "Region of the S3 bucket (default us-east-1).")] = (
        "us-east-1"
    )
    s3_access_key_id: Annotated[
        str, Flag(IMPORTING, "S3 access key id (default: botocore's credential chain).")
    ] = ""
    s3_secret_access_key: Annotated[
        str, Flag(IMPORTING, "S3 secret access key (default: botocore's credential chain).")
    ] = ""
    s3_addressing_style: Annotated[
        Literal["path", "virtual"], Flag(IMPORTING, "path or virtual S3 addressing (default path).")
    ] = "path"
    s3_part_size: Annotated[
        PartSize,
        Flag(IMPORTING, "Bytes per multipart upload part, 5 MiB to 5 GiB (default 8 MiB)."),
    ] = 8 * 1024**2
    token_secret: Annotated[
        str,
        Flag(
            SERVING,
            "Secret (32+ characters) that signs HS256 bearer tokens; kiln dev without one "
            "makes one in the data dir.",
        ),
    ] = ""
    jwks_url: Annotated[
        str, Flag(SERVING, "JWKS URL of an OIDC provider; its RS256/ES256 tokens are accepted.")
    ] = ""
    jwt_audience: Annotated[
        str, Flag(SERVING, "Audience every token's aud must name (default: not checked).")
    ] = ""
    jwt_issuer: Annotated[
        str, Flag(SERVING, "Issuer every token's iss must be (default: not checked).")
    ] = ""
    admins: Annotated[
        tuple[str, ...],
        Flag(SERVING, "Comma-separated subject ids that are admins of every folder."),
    ] = ()

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'kiln.db'}"

    @property
    def storage(self) -> str:
        return self.storage_url or f"file://{self.data_dir.resolve() / 'blobs'}"

    @property
    def blob_root(self) -> Path:
        """The file store's directory (meaningless for an s3:// store)."""
        return Path(self.storage.removeprefix("file://"))

    def __repr__(self) -> str:
        """Every setting, with the secrets hidden."""
        values = {field: getattr(self, field) for field in self.__struct_fields__}
        for secret in ("s3_secret_access_key", "token_secret"):
            if values[secret]:
                values[secret] = "***"
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in values.items())})"


def env_name(field: str) -> str:
    return "KILN_" + field.upper()


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def both_names(field: str) -> str:
    """`--s3-part-size (KILN_S3_PART_SIZE)`: a setting named where either may be meant."""
    return f"{flag_name(field)} ({env_name(field)})"


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


def build(values: dict[str, Any], **defaults: Any) -> Settings:
    """Settings from flag/variable values (None = not given) over per-command defaults."""
    given = {key: value for key, value in values.items() if value is not None}
    merged = {**defaults, **given}
    for field in ("import_allowed_hosts", "admins"):
        if field in merged:
            merged[field] = _split_list(merged[field])
    try:
        settings = msgspec.convert(merged, Settings, strict=False, dec_hook=_path)
    except msgspec.ValidationError as exc:
        raise _invalid(str(exc), merged) from None
    _check_urls(settings)
    _check_http_host(settings.http_host)
    _check_allowed_hosts(settings)
    _check_auth(settings)
    return settings


def _path(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError


_TYPE_WORDS = {"`int`": "an integer", "`float`": "a number"}


def _invalid(text: str, given: dict[str, Any]) -> SettingsError:
    """msgspec's `Expected `int`, got `str` - at `$.http_port``, said with the value given:
    http_port, `expected an integer, got 'x'`."""
    detail, _, where = text.partition(" - at `$.")
    field = where.rstrip("`").split("[")[0]
    if field not in given:
        return SettingsError(field, detail)
    value = given[field]
    if detail.startswith("Invalid enum value"):
        choices = ", ".join(get_args(get_type_hints(Settings)[field]))
        return SettingsError(field, f"expected one of {choices}, got {value!r}")
    detail = re.sub(r", got `[^`]*`$", "", detail)
    for name, words in _TYPE_WORDS.items():
        detail = detail.replace(name, words)
    return SettingsError(field, f"{detail[:1].lower()}{detail[1:]}, got {value!r}")


def _check_urls(settings: Settings) -> None:
    schemes = {
        "database_url": ("sqlite:///", "postgresql://", "postgres://"),
        "broker_url": ("memory://", "amqp://", "amqps://"),
        "storage_url": ("file://", "s3://"),
    }
    for field, allowed in schemes.items():
        value = getattr(settings, field)
        if value and not value.startswith(allowed):
            raise SettingsError(field, f"must start with one of {', '.join(allowed)}")
    if settings.broker_url.startswith("amqp"):
        _check_broker_nodes(settings.broker_url)
    storage = settings.storage_url
    if storage.startswith("file://") and not storage.startswith("file:///"):
        raise SettingsError("storage_url", "file:// needs an absolute path")
    if storage.startswith("s3://") and not storage.removeprefix("s3://").partition("/")[0]:
        raise SettingsError("storage_url", "s3:// needs a bucket (s3://bucket/prefix)")
    for field in ("s3_endpoint_url", "jwks_url"):
        if (value := getattr(settings, field)) and not _is_http_url(value):
            raise SettingsError(field, f"{value!r} is not an http:// or https:// URL with a host")


def _check_broker_nodes(text: str) -> None:
    """Every node of the cluster with a host: `amqp://user:password@node1:5672,node2/vhost`."""
    try:
        broker_nodes(text)
    except BrokerUrlError as exc:
        raise SettingsError("broker_url", str(exc)) from exc


def _is_http_url(text: str) -> bool:
    try:
        url = URL(text)
    except ValueError:
        return False
    return url.scheme in ("http", "https") and bool(url.host)


_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


def _check_http_host(host: str) -> None:
    """An address to listen on: an IP address (`::` and `0.0.0.0`: all) or a host name."""
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return
    if len(host) > 253 or not _HOST_NAME.fullmatch(host):
        raise SettingsError("http_host", f"{host!r} is not an IP address or a host name")


def _check_allowed_hosts(settings: Settings) -> None:
    for entry in settings.import_allowed_hosts:
        try:
            allowed_entry(entry)
        except ValueError as exc:
            raise SettingsError("import_allowed_hosts", str(exc)) from None


MIN_SECRET_LENGTH = 32  # HS256 wants a key at least as long as its 256-bit hash


def _check_auth(settings: Settings) -> None:
    if settings.token_secret and len(settings.token_secret) < MIN_SECRET_LENGTH:
        raise SettingsError("token_secret", f"must be at least {MIN_SECRET_LENGTH} characters")


def check_directories(settings: Settings, *fields: str) -> None:
    """The directory settings among `fields` name directories: the data directory if it exists
    already (it is made otherwise), the others because what they name is read."""
    for field in fields:
        path: Path | None = getattr(settings, field)
        if path is None or (field == "data_dir" and not path.exists()):
            continue
        if not path.is_dir():
            what = "is not a directory" if path.exists() else "does not exist"
            raise SettingsError(field, f"{str(path)!r} {what}")
