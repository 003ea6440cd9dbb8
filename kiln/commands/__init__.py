"""The client commands of `kiln`: images, operations, access, import, events."""

import click

from kiln.commands import access, events, images, importing, operations


def register(main: click.Group) -> None:
    for command in (images.group, operations.group, access.group, importing.import_):
        main.add_command(command)
    main.add_command(events.events)
