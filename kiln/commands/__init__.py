"""The client commands of `kiln`: images, operations, access, import, events, token.

Each is imported only when it is run (or its own help shown): `kiln --help` lists them from
the table below without loading the HTTP client, rich or PyJWT."""

import importlib

import click

# name: (module:attribute, the command's short help as `kiln --help` lists it)
CLIENT_COMMANDS: dict[str, tuple[str, str]] = {
    "access": ("kiln.commands.access:group", "List and change an image's access bindings."),
    "events": (
        "kiln.commands.events:events",
        "Follow a folder's events as they happen, one line each (--json: the CloudEvent).",
    ),
    "images": ("kiln.commands.images:group", "Create, read, change and delete images."),
    "import": (
        "kiln.commands.importing:import_",
        "Create the images of MANIFEST (JSON Lines of create requests, or CSV name,uri).",
    ),
    "operations": ("kiln.commands.operations:group", "Follow and cancel operations."),
    "token": ("kiln.commands.token:token", "Bearer tokens (HS256, signed with KILN_TOKEN_SECRET)."),
}


def load(name: str) -> click.Command:
    module, _, attribute = CLIENT_COMMANDS[name][0].partition(":")
    command: click.Command = getattr(importlib.import_module(module), attribute)
    return command


class KilnGroup(click.Group):
    """The `kiln` group: its own (server) commands, and the client commands, loaded lazily."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *CLIENT_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in CLIENT_COMMANDS:
            return load(cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))
        rows = [(name, self._short_help(ctx, name, limit)) for name in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def _short_help(self, ctx: click.Context, name: str, limit: int) -> str:
        listed = self.commands.get(name) or click.Command(name, help=CLIENT_COMMANDS[name][1])
        return listed.get_short_help_str(limit)
