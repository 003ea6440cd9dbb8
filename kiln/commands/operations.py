"""`kiln operations get|wait|cancel|list`."""

import click

from contracts.operations import ListImageOperationsResponse
from kiln.client import KilnClient
from kiln.commands.common import client_command, settle, wait_options
from kiln.commands.render import Output

group = click.Group("operations", help="Follow and cancel operations.")


@client_command(group, "get")
@click.argument("operation_id")
async def get(client: KilnClient, out: Output, *, operation_id: str) -> None:
    """Show an operation as it is now."""
    out.operation(await client.get_operation(operation_id))


@client_command(group, "wait")
@click.argument("operation_id")
@click.option("--timeout", type=float, default=None, help="Give up after this many seconds.")
async def wait(
    client: KilnClient, out: Output, *, operation_id: str, timeout: float | None
) -> None:
    """Wait until the operation is done.

    Exit status: 0 if it ended without error; 1 if it ended with one, CANCELLED included (its
    code and message on stderr), or if --timeout ran out (DEADLINE_EXCEEDED)."""
    await settle(client, out, await client.get_operation(operation_id), True, timeout)


@client_command(group, "cancel")
@click.argument("operation_id")
@wait_options
async def cancel(
    client: KilnClient, out: Output, *, operation_id: str, wait: bool, timeout: float | None
) -> None:
    """Ask for a running create to stop (the image is removed when it does).

    Exit status, by the rule of `wait` and of the commands that start operations: 1 once the
    operation ended with an error, CANCELLED included (so a cancel that took effect exits 1,
    CANCELLED on stderr); 0 while it runs (without --wait), or if it ended without error
    before the cancel could stop it."""
    await settle(client, out, await client.cancel_operation(operation_id), wait, timeout)


@client_command(group, "list")
@click.argument("image_id")
async def list_(client: KilnClient, out: Output, *, image_id: str) -> None:
    """An image's operations, newest first."""
    page = await client.list_operations(image_id, page_size=1000)
    operations = list(page.operations)
    while page.next_page_token:
        page = await client.list_operations(image_id, page_token=page.next_page_token)
        operations.extend(page.operations)
    out.operations(ListImageOperationsResponse(operations=operations))
