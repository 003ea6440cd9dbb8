"""Settings: one typed object built once from `KILN_*` variables and command-line flags."""

from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Positive = Annotated[int, msgspec.Meta(ge=1)]


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
    disk_source_dir: Path | None = None
    max_body_bytes: Positive = 1024 * 1024
    worker_prefetch: Positive = 16
    worker_lease_seconds: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    worker_reconcile_seconds: Annotated[float, msgspec.Meta(gt=0)] = 15.0
    log_format: Literal["console", "json"] = "json"

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'kiln.db'}"

    @property
    def blob_root(self) -> Path:
        url = self.storage_url or f"file://{self.data_dir.resolve() / 'blobs'}"
        return Path(url.removeprefix("file://"))


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
    if "import_allowed_hosts" in merged:
        merged["import_allowed_hosts"] = _split_list(merged["import_allowed_hosts"])
    try:
        settings = msgspec.convert(merged, Settings, strict=False, dec_hook=_path)
    except msgspec.ValidationError as exc:
        raise SettingsError(_name_setting(str(exc))) from None
    _check_urls(settings)
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
        "storage_url": ("file://",),
    }
    for field, allowed in schemes.items():
        value = getattr(settings, field)
        if value and not value.startswith(allowed):
            raise SettingsError(f"{env_name(field)}: must start with one of {', '.join(allowed)}")
