"""`kiln access list|set|add|remove`: an image's access bindings, ROLE:SUBJECT_TYPE:SUBJECT_ID."""

import click

from contracts.access import AccessBindingDelta, ListAccessBindingsResponse
from contracts.enums import AccessBindingAction
from kiln.client import KilnClient
from kiln.commands.common import client_command, key_option, parse_binding, settle, wait_options
from kiln.commands.render import Output

group = click.Group(
    "access",
    short_help="List and change an image's access bindings.",
    help="An image's access bindings, each written ROLE:SUBJECT_TYPE:SUBJECT_ID"
    " (e.g. compute.images.user:system:allAuthenticatedUsers).",
)
bindings_argument = click.argument("bindings", nargs=-1, metavar="ROLE:SUBJECT_TYPE:SUBJECT_ID…")


@client_command(group, "list")
@click.argument("image_id")
async def list_(client: KilnClient, out: Output, *, image_id: str) -> None:
    """Every binding of the image."""
    bindings = [binding async for binding in client.iter_access_bindings(image_id)]
    out.bindings(ListAccessBindingsResponse(access_bindings=bindings))


@client_command(group, "set")
@click.argument("image_id")
@bindings_argument
@key_option
@wait_options
async def set_(
    client: KilnClient,
    out: Output,
    *,
    image_id: str,
    bindings: tuple[str, ...],
    idempotency_key: str | None,
    wait: bool,
    timeout: float | None,
) -> None:
    """Replace all bindings with those given (none: remove them all)."""
    wanted = [parse_binding(text) for text in bindings]
    operation = await client.set_access_bindings(image_id, wanted, idempotency_key=idempotency_key)
    await settle(client, out, operation, wait, timeout)


async def _change(
    client: KilnClient,
    out: Output,
    action: AccessBindingAction,
    image_id: str,
    bindings: tuple[str, ...],
    idempotency_key: str | None,
    wait: bool,
    timeout: float | None,
) -> None:
    if not bindings:
        raise click.UsageError("give at least one ROLE:SUBJECT_TYPE:SUBJECT_ID")
    deltas = [
        AccessBindingDelta(action=action, access_binding=parse_binding(text)) for text in bindings
    ]
    operation = await client.update_access_bindings(
        image_id, deltas, idempotency_key=idempotency_key
    )
    await settle(client, out, operation, wait, timeout)


@client_command(group, "add")
@click.argument("image_id")
@bindings_argument
@key_option
@wait_options
async def add(
    client: KilnClient,
    out: Output,
    *,
    image_id: str,
    bindings: tuple[str, ...],
    idempotency_key: str | None,
    wait: bool,
    timeout: float | None,
) -> None:
    """Add bindings (those already present are left alone)."""
    await _change(
        client, out, AccessBindingAction.ADD, image_id, bindings, idempotency_key, wait, timeout
    )


@client_command(group, "remove")
@click.argument("image_id")
@bindings_argument
@key_option
@wait_options
async def remove(
    client: KilnClient,
    out: Output,
    *,
    image_id: str,
    bindings: tuple[str, ...],
    idempotency_key: str | None,
    wait: bool,
    timeout: float | None,
) -> None:
    """Remove bindings (those absent are ignored)."""
    await _change(
        client, out, AccessBindingAction.REMOVE, image_id, bindings, idempotency_key, wait, timeout
    )
