"""Bearer tokens Kiln signs itself (HS256 with KILN_TOKEN_SECRET), and `kiln dev`'s set-up when
no secret is configured: a secret kept in the data directory, and a token for `admin` that the
client commands read from there when they are given none."""

import os
import re
import secrets
import time
from pathlib import Path

import msgspec

from kiln.settings import MIN_SECRET_LENGTH, Settings, SettingsError

SECRET_FILE = "token.secret"
ADMIN_TOKEN_FILE = "admin.token"
DEV_ADMIN = "admin"
DEV_TOKEN_SECONDS = 30 * 24 * 3600
MAX_SUBJECT_LENGTH = 100
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"([0-9]+)([smhd]?)")


def issue(secret: str, subject: str, seconds: int, *, audience: str = "", issuer: str = "") -> str:
    """A token for `subject`, valid from now for `seconds`; with the `aud` and `iss` a gateway
    configured with KILN_JWT_AUDIENCE / KILN_JWT_ISSUER requires."""
    import jwt  # here, not above: the client commands read admin.token without PyJWT

    now = int(time.time())
    claims: dict[str, object] = {"sub": subject, "iat": now, "nbf": now, "exp": now + seconds}
    if audience:
        claims["aud"] = audience
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm="HS256")


def parse_duration(text: str) -> int:
    """Seconds of `3600`, `90s`, `15m`, `1h` or `7d`."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration such as 3600, 90s, 15m, 1h or 7d")
    return int(match.group(1)) * _UNITS[match.group(2) or "s"]


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read (mode 0600, whatever the umask)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        os.fchmod(file.fileno(), 0o600)
        file.write(text)


def stored_secret(data_dir: Path) -> str | None:
    path = data_dir / SECRET_FILE
    return path.read_text().strip() if path.is_file() else None


def stored_admin_token(data_dir: Path) -> str | None:
    """The admin token a `kiln dev` with this data directory wrote, if it is there to read."""
    try:
        return (data_dir / ADMIN_TOKEN_FILE).read_text().strip() or None
    except OSError:
        return None


def dev_secret(data_dir: Path) -> str:
    """The data directory's token secret, made on first use (tokens survive restarts)."""
    secret = stored_secret(data_dir)
    if secret is None or len(secret) < MIN_SECRET_LENGTH:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        secret = secrets.token_urlsafe(48)
        _write_private(data_dir / SECRET_FILE, secret + "\n")
    os.chmod(data_dir / SECRET_FILE, 0o600)  # however it was left
    return secret


def bootstrap_dev(settings: Settings) -> tuple[Settings, str | None]:
    """Without a configured secret or JWKS: the data directory's secret, `admin` an admin, and a
    fresh admin token (also written to <data dir>/admin.token). Otherwise nothing changes."""
    if settings.token_secret or settings.jwks_url:
        return settings, None
    secret = dev_secret(settings.data_dir)
    token = issue(
        secret,
        DEV_ADMIN,
        DEV_TOKEN_SECONDS,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )
    _write_private(settings.data_dir / ADMIN_TOKEN_FILE, token + "\n")
    admins = (*settings.admins, DEV_ADMIN)
    return msgspec.structs.replace(settings, token_secret=secret, admins=admins), token


def signing_secret(settings: Settings) -> str:
    """The secret `kiln token issue` signs with: KILN_TOKEN_SECRET, else the one `kiln dev`
    keeps in the data directory."""
    secret = settings.token_secret or stored_secret(settings.data_dir)
    if not secret:
        raise SettingsError(
            "token_secret",
            f"not set, and {settings.data_dir / SECRET_FILE} does not exist (start `kiln dev`"
            " once, or set the secret)",
        )
    return secret
