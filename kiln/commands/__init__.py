"""The client commands of `kiln`: images, operations, access, import."""

import click

from kiln.commands import access, images, importing, operations


def register(main: click.Group) -> None:
    for command in (images.group, operations.group, access.group, importing.import_):
        main.add_command(command)
