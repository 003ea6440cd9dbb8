"""What every client command shares: --url/--token/--data-dir/--json, running the client,
failing well."""

import asyncio
import functools
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import click
import msgspec

from contracts.access import AccessBinding
from contracts.errors import Code
from contracts.operations import Operation
from kiln.client import KilnClient, KilnError
from kiln.commands.render import Output
from kiln.tokens import ADMIN_TOKEN_FILE, stored_admin_token

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_DATA_DIR = ".kiln"
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
ClientAction = Callable[..., Awaitable[None]]


class Token(NamedTuple):
    """The bearer token a command sends: --token / KILN_TOKEN, else the admin token of a
    `kiln dev` with the data directory given (`read_from`), else none."""

    value: str | None
    read_from: Path | None = None

    @classmethod
    def find(cls, given: str | None, data_dir: Path) -> "Token":
        if given:
            return cls(given)
        stored = stored_admin_token(data_dir)
        return cls(stored, data_dir / ADMIN_TOKEN_FILE if stored else None)

    def hint(self, url: str, data_dir: Path) -> str:
        """What to do about a 401 from `url`."""
        if self.read_from is not None:
            return (
                f"hint: {url} refused the token read from {self.read_from}; give its own"
                " with --token or KILN_TOKEN"
            )
        if self.value is None:
            return (
                f"hint: no token given, and no {data_dir / ADMIN_TOKEN_FILE} to read: pass"
                " --token or KILN_TOKEN (`kiln token issue --subject SUBJECT` prints one), or"
                " point --data-dir (KILN_DATA_DIR) at the data directory of a running kiln dev"
                " (it writes admin.token there)"
            )
        return ""


def fail(error: KilnError, hint: str = "") -> NoReturn:
    """The error's code and message on stderr (and the hint, if any), and a non-zero exit."""
    where = f" (request {error.request_id})" if error.request_id else ""
    click.echo(f"error: {error.code_name}: {error.message}{where}", err=True)
    if hint:
        click.echo(hint, err=True)
    sys.exit(EXIT_FAILED)


def run_client(
    action: ClientAction, url: str, token: str | None, data_dir: Path, **kwargs: Any
) -> None:
    sent = Token.find(token, data_dir)

    async def session() -> None:
        async with KilnClient(url, sent.value) as client:
            await action(client, **kwargs)

    try:
        asyncio.run(session())
    except KilnError as error:
        fail(error, sent.hint(url, data_dir) if error.code == Code.UNAUTHENTICATED else "")
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)


def client_command(group: click.Group | None, name: str) -> Callable[[ClientAction], click.Command]:
    """A command (on `group`, if given) running `action(client, out=…, **options)` with the
    shared --url, --token, --data-dir and --json options."""

    def decorate(action: ClientAction) -> click.Command:
        @click.option(
            "--url",
            envvar="KILN_URL",
            default=DEFAULT_URL,
            show_default=True,
            help="Kiln API base URL (env KILN_URL).",
        )
        @click.option(
            "--token",
            envvar="KILN_TOKEN",
            default=None,
            help="Bearer token (env KILN_TOKEN; default: the admin.token of --data-dir).",
        )
        @click.option(
            "--data-dir",
            envvar="KILN_DATA_DIR",
            type=click.Path(file_okay=False, path_type=Path),
            default=DEFAULT_DATA_DIR,
            show_default=True,
            help="kiln dev's data directory, whose admin.token is sent when no --token is"
            " given (env KILN_DATA_DIR).",
        )
        @click.option(
            "--json", "as_json", is_flag=True, help="Print the API's JSON instead of a table."
        )
        @functools.wraps(action)
        def command(
            url: str, token: str | None, data_dir: Path, as_json: bool, **options: Any
        ) -> None:
            run_client(action, url, token, data_dir, out=Output(as_json), **options)

        return (group.command if group else click.command)(name)(command)

    return decorate


def wait_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option(
        "--timeout", type=float, default=None, help="With --wait: give up after this many seconds."
    )(command)
    return click.option(
        "--wait", "wait", is_flag=True, help="Follow the operation until it is done."
    )(command)


def key_option(command: Callable[..., Any]) -> Callable[..., Any]:
    key = click.option(
        "--idempotency-key",
        default=None,
        help="Reuse this key to make a repeated command safe (default: new).",
    )
    return key(command)


def parse_labels(values: tuple[str, ...]) -> dict[str, str]:
    labels = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--label")
        labels[key] = value
    return labels


def parse_binding(text: str) -> AccessBinding:
    """ROLE:SUBJECT_TYPE:SUBJECT_ID, e.g. compute.images.user:system:allAuthenticatedUsers."""
    role, _, rest = text.partition(":")
    kind, _, subject = rest.partition(":")
    if not (role and kind and subject):
        raise click.BadParameter(f"{text!r}: expected ROLE:SUBJECT_TYPE:SUBJECT_ID")
    binding = {"roleId": role, "subject": {"id": subject, "type": kind}}
    try:
        return msgspec.convert(binding, AccessBinding)
    except msgspec.ValidationError as exc:
        raise click.BadParameter(f"{text!r}: {exc}") from exc


async def settle(
    client: KilnClient, out: Output, operation: Operation, wait: bool, timeout: float | None
) -> None:
    """Show the operation (followed to done with --wait); a failed one exits non-zero."""
    if wait:
        operation = await client.wait_done(operation, timeout)
    out.operation(operation)
    if operation.error is not None:
        error = operation.error
        request_id = next((d.request_id for d in error.details if d.request_id), "")
        raise KilnError.from_status(
            error.code, f"operation {operation.id}: {error.message}", request_id
        )
