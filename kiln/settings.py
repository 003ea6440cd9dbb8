"""Settings: one typed object built once from `KILN_*` variables and command-line flags."""

from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from contracts.urls import allowed_entry

# S3's part sizes: all but the last part of an upload at least 5 MiB, none over 5 GiB (the
# worker's S3 store checks the same; plain numbers here, so settings load without it).
S3_MIN_PART = 5 << 20
S3_MAX_PART = 5 << 30
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
OptionalPort = Annotated[int, msgspec.Meta(ge=0, le=65535)]  # 0: not served
Positive = Annotated[int, msgspec.Meta(ge=1)]
Seconds = Annotated[float, msgspec.Meta(ge=0)]
PartSize = Annotated[int, msgspec.Meta(ge=S3_MIN_PART, le=S3_MAX_PART)]


class SettingsError(Exception):
    """A setting is missing or malformed; the message names it."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    data_dir: Path = Path(".kiln")
    database_url: str = ""
    broker_url: str = ""
    storage_url: str = ""
    http_host: str = "127.0.0.1"
    http_port: Port = 8080
    import_allowed_hosts: tuple[str, ...] = ()
    import_root: Path | None = None
    import_max_bytes: Positive = 64 * 1024**3
    import_deadline_seconds: Annotated[float, msgspec.Meta(gt=0)] = 6 * 3600.0
    import_min_rate_bytes: Annotated[int, msgspec.Meta(ge=0)] = 64 * 1024
    disk_source_dir: Path | None = None
    max_body_bytes: Positive = 1024 * 1024
    max_streams_per_subject: Positive = 16
    http_header_timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 15.0
    worker_prefetch: Positive = 16
    worker_fetches: Positive = 16
    worker_lease_seconds: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    worker_reconcile_seconds: Annotated[float, msgspec.Meta(gt=0)] = 15.0
    dependency_deadline_seconds: Annotated[float, msgspec.Meta(gt=0)] = 600.0
    log_format: Literal["console", "json"] = "json"
    worker_http_port: OptionalPort = 9090
    shutdown_grace_seconds: Seconds = 0.0
    startup_timeout_seconds: Seconds = 60.0
    s3_endpoint_url: str = ""
    s3_region: str = "us-east-1"
    s3_access_key_id: str = ""
    s3_secret_access_key: str = ""
    s3_addressing_style: Literal["path", "virtual"] = "path"
    s3_part_size: PartSize = 8 * 1024**2
    token_secret: str = ""
    jwks_url: str = ""
    jwt_audience: str = ""
    jwt_issuer: str = ""
    admins: tuple[str, ...] = ()

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
        raise SettingsError(_name_setting(str(exc))) from None
    _check_urls(settings)
    _check_allowed_hosts(settings)
    _check_auth(settings)
    return settings


def _path(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError


def _name_setting(text: str) -> str:
    detail, _, where = text.partition(" - at `$.")
    field = where.rstrip("`").split("[")[0]
    return f"{env_name(field)}: {detail}" if field else text


def _check_urls(settings: Settings) -> None:
    schemes = {
        "database_url": ("sqlite:///", "postgresql://", "postgres://"),
        "broker_url": ("memory://", "amqp://", "amqps://"),
        "storage_url": ("file://", "s3://"),
    }
    for field, allowed in schemes.items():
        value = getattr(settings, field)
        if value and not value.startswith(allowed):
            raise SettingsError(f"{env_name(field)}: must start with one of {', '.join(allowed)}")
    storage = settings.storage_url
    if storage.startswith("file://") and not storage.startswith("file:///"):
        raise SettingsError(f"{env_name('storage_url')}: file:// needs an absolute path")
    if storage.startswith("s3://") and not storage.removeprefix("s3://").partition("/")[0]:
        raise SettingsError(f"{env_name('storage_url')}: s3:// needs a bucket (s3://bucket/prefix)")


def _check_allowed_hosts(settings: Settings) -> None:
    for entry in settings.import_allowed_hosts:
        try:
            allowed_entry(entry)
        except ValueError as exc:
            raise SettingsError(f"{env_name('import_allowed_hosts')}: {exc}") from None


MIN_SECRET_LENGTH = 32  # HS256 wants a key at least as long as its 256-bit hash


def _check_auth(settings: Settings) -> None:
    if settings.token_secret and len(settings.token_secret) < MIN_SECRET_LENGTH:
        raise SettingsError(
            f"{env_name('token_secret')}: must be at least {MIN_SECRET_LENGTH} characters"
        )
    if settings.jwks_url and not settings.jwks_url.startswith(("https://", "http://")):
        raise SettingsError(f"{env_name('jwks_url')}: must start with https:// or http://")
