"""The client commands of `kiln`: images, operations, access, import, events, token."""

import click

from kiln.commands import access, events, images, importing, operations, token


def register(main: click.Group) -> None:
    for command in (images.group, operations.group, access.group, importing.import_):
        main.add_command(command)
    main.add_command(events.events)
    main.add_command(token.token)
