"""`kiln events`: follow a folder's events live (the server's /kiln/v1/events stream)."""

import click

from contracts.errors import Code
from kiln.client import KilnClient, StreamEvent
from kiln.commands.common import client_command
from kiln.commands.images import folder_option
from kiln.commands.render import Output


def event_line(item: StreamEvent) -> str:
    """`POSITION TIME TYPE IMAGE OPERATION [STATUS | RESULT]`, one line per event."""
    event = item.event
    moment = event.time.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    line = f"{item.position:>6}  {moment}  {event.type:<37}  {event.subject}  {event.correlationid}"
    return f"{line}  {_outcome(event.data)}".rstrip()


def _outcome(data: object) -> str:
    """The image's status, or how an operation ended."""
    if not isinstance(data, dict):
        return ""
    if "status" in data:
        return str(data["status"])
    error = data.get("error")
    if isinstance(error, dict):
        code = int(error.get("code", Code.UNKNOWN))
        name = Code(code).name if code in Code._value2member_map_ else str(code)
        return f"{name}: {error.get('message', '')}"
    return "ok" if data.get("done") else ""


@client_command(None, "events")
@folder_option
@click.option(
    "--type",
    "types",
    default="",
    help="Only these event types, comma-separated: ready,failed,operation.done.",
)
@click.option(
    "--after",
    "after",
    type=click.IntRange(min=0),
    default=None,
    help="Replay the stored events after this position first (0: all kept, 24 h at least).",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Stop after N events.")
async def events(
    client: KilnClient,
    out: Output,
    *,
    folder_id: str,
    types: str,
    after: int | None,
    limit: int | None,
) -> None:
    """Follow a folder's events as they happen, one line each (--json: the CloudEvent).

    A dropped connection is resumed after the last event printed: nothing is lost or
    printed twice. Stop with Ctrl-C."""
    count = 0
    async for item in client.events(folder_id, types or None, after):
        click.echo(item.raw.decode() if out.as_json else event_line(item))
        count += 1
        if limit is not None and count >= limit:
            return
