"""`kiln`: the server commands `dev | gateway | worker` (every setting they use is a flag and a
`KILN_*` variable) and the client commands (kiln/commands/).

The server (gateway, worker, store, bus) is imported by these commands only when they run:
the client commands and `--help` start without it."""

from typing import Any

import click

from kiln.commands import KilnGroup
from kiln.flags import bad_setting, settings_options
from kiln.settings import DEV, GATEWAY, WORKER, SettingsError, build


def serve(ctx: click.Context, values: dict[str, Any], **defaults: Any) -> None:
    """Run the process of the command `ctx` is of; a setting that cannot work (malformed, a
    port in use, a database URL refused) ends it with one line naming the setting, exit 2."""
    from kiln import processes  # the server: only for the server commands

    try:
        settings = build(values, **defaults)
        processes.run(processes.PROCESSES[ctx.command.name or ""](settings))
    except SettingsError as error:
        raise bad_setting(ctx, error) from None


@click.group(cls=KilnGroup)
def main() -> None:
    """Kiln: a self-hosted, event-driven Compute Cloud Image API."""


@main.command()
@settings_options(DEV)
@click.pass_context
def dev(ctx: click.Context, /, **values: Any) -> None:
    """Gateway and workers in one process on SQLite and an in-process bus."""
    serve(ctx, values, broker_url="memory://", log_format="console")


@main.command()
@settings_options(GATEWAY)
@click.pass_context
def gateway(ctx: click.Context, /, **values: Any) -> None:
    """The HTTP API only (run workers with `kiln worker`)."""
    serve(ctx, values)


@main.command()
@settings_options(WORKER)
@click.pass_context
def worker(ctx: click.Context, /, **values: Any) -> None:
    """A worker: consumes commands, imports images, re-drives stalled operations."""
    serve(ctx, values)
