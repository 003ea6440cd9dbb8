"""`kiln token issue`: a bearer token signed with the configured secret."""

import click

from kiln.flags import bad_setting
from kiln.settings import SettingsError, build
from kiln.tokens import MAX_SUBJECT_LENGTH, issue, parse_duration, signing_secret


@click.group()
def token() -> None:
    """Bearer tokens (HS256, signed with KILN_TOKEN_SECRET)."""


@token.command("issue")
@click.option("--subject", required=True, help="The caller's subject id (the token's sub).")
@click.option("--ttl", default="1h", show_default=True, help="Lifetime: 3600, 90s, 15m, 1h or 7d.")
@click.option(
    "--token-secret",
    envvar="KILN_TOKEN_SECRET",
    default=None,
    help="Signing secret (env KILN_TOKEN_SECRET; default: the one kiln dev keeps in the data dir).",
)
@click.option(
    "--data-dir",
    envvar="KILN_DATA_DIR",
    default=None,
    help="kiln dev's data directory (env KILN_DATA_DIR, default ./.kiln).",
)
@click.option(
    "--jwt-audience",
    envvar="KILN_JWT_AUDIENCE",
    default=None,
    help="The token's aud (env KILN_JWT_AUDIENCE: the audience the gateway requires).",
)
@click.option(
    "--jwt-issuer",
    envvar="KILN_JWT_ISSUER",
    default=None,
    help="The token's iss (env KILN_JWT_ISSUER: the issuer the gateway requires).",
)
@click.pass_context
def issue_command(ctx: click.Context, /, subject: str, ttl: str, **values: str | None) -> None:
    """Print a token for --subject, valid from now for --ttl."""
    try:
        seconds = parse_duration(ttl)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--ttl") from None
    if not 1 <= len(subject) <= MAX_SUBJECT_LENGTH:
        raise click.BadParameter(
            f"must be 1 to {MAX_SUBJECT_LENGTH} characters", param_hint="--subject"
        )
    try:
        settings = build(values)
        secret = signing_secret(settings)
    except SettingsError as exc:
        raise bad_setting(ctx, exc) from None
    audience, issuer = settings.jwt_audience, settings.jwt_issuer
    click.echo(issue(secret, subject, seconds, audience=audience, issuer=issuer))
