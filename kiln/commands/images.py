"""`kiln images create|get|list|update|delete|latest`."""

from typing import Any

import click

from contracts.enums import OsType
from contracts.images import CreateImageRequest, ListImagesResponse, Os
from kiln.client import KilnClient
from kiln.commands.common import client_command, key_option, parse_labels, settle, wait_options
from kiln.commands.render import Output

group = click.Group("images", help="Create, read, change and delete images.")
folder_option = click.option(
    "--folder",
    "folder_id",
    envvar="KILN_FOLDER",
    required=True,
    help="Folder id (env KILN_FOLDER).",
)


@client_command(group, "create")
@folder_option
@click.option("--name", default="", help="Unique in the folder.")
@click.option("--description", default="")
@click.option("--family", default="")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Repeatable.")
@click.option("--min-disk-size", type=int, default=0, help="Bytes.")
@click.option("--product-id", "product_ids", multiple=True, help="Repeatable.")
@click.option("--uri", default="", help="Source: an image file URL.")
@click.option("--source-image", "image_id", default="", help="Source: an image id to copy.")
@click.option("--disk-id", default="", help="Source: a disk id.")
@click.option("--snapshot-id", default="", help="Source: a snapshot id.")
@click.option("--os", "os_type", type=click.Choice(["LINUX", "WINDOWS"]), default=None)
@click.option("--pooled", is_flag=True)
@key_option
@wait_options
async def create(
    client: KilnClient,
    out: Output,
    *,
    labels: tuple[str, ...],
    product_ids: tuple[str, ...],
    os_type: str | None,
    idempotency_key: str | None,
    wait: bool,
    timeout: float | None,
    **fields: Any,
) -> None:
    """Create an image from one source (--uri, --source-image, --disk-id or --snapshot-id)."""
    request = CreateImageRequest(
        labels=parse_labels(labels),
        product_ids=list(product_ids),
        os=Os(type=OsType(os_type)) if os_type else None,
        **fields,
    )
    operation = await client.create_image(request, idempotency_key=idempotency_key)
    await settle(client, out, operation, wait, timeout)


@client_command(group, "get")
@click.argument("image_id")
async def get(client: KilnClient, out: Output, *, image_id: str) -> None:
    """Show one image."""
    out.image(await client.get_image(image_id))


@client_command(group, "list")
@folder_option
@click.option("--filter", "filter_", default="", help="e.g. 'family = \"ubuntu\"'.")
@click.option("--order-by", default="", help="id|name|createdAt [asc|desc].")
@click.option("--page-size", type=int, default=0, help="One page of this size (default: all).")
@click.option("--page-token", default="", help="One page, from this token.")
async def list_(
    client: KilnClient,
    out: Output,
    *,
    folder_id: str,
    filter_: str,
    order_by: str,
    page_size: int,
    page_token: str,
) -> None:
    """List a folder's images (every page unless --page-size or --page-token is given)."""
    if page_size or page_token:
        page = await client.list_images(
            folder_id,
            page_size=page_size,
            page_token=page_token,
            filter=filter_,
            order_by=order_by,
        )
    else:
        images = client.iter_images(folder_id, page_size=1000, filter=filter_, order_by=order_by)
        page = ListImagesResponse(images=[image async for image in images])
    out.images(page)


@client_command(group, "update")
@click.argument("image_id")
@click.option("--name", default=None)
@click.option("--description", default=None)
@click.option(
    "--label", "labels", multiple=True, metavar="KEY=VALUE", help="Repeatable; replaces all labels."
)
@click.option("--clear-labels", is_flag=True, help="Remove every label.")
@click.option("--min-disk-size", type=int, default=None, help="Bytes; 0 resets to the size.")
@key_option
@wait_options
async def update(
    client: KilnClient,
    out: Output,
    *,
    image_id: str,
    labels: tuple[str, ...],
    clear_labels: bool,
    idempotency_key: str | None,
    wait: bool,
    timeout: float | None,
    **given: Any,
) -> None:
    """Change the fields given; the others stay as they are."""
    fields = {name: value for name, value in given.items() if value is not None}
    if labels or clear_labels:
        fields["labels"] = parse_labels(labels)
    if not fields:
        raise click.UsageError("nothing to update: give --name, --description, --label, …")
    operation = await client.update_image(image_id, idempotency_key=idempotency_key, **fields)
    await settle(client, out, operation, wait, timeout)


@client_command(group, "delete")
@click.argument("image_id")
@key_option
@wait_options
async def delete(
    client: KilnClient,
    out: Output,
    *,
    image_id: str,
    idempotency_key: str | None,
    wait: bool,
    timeout: float | None,
) -> None:
    """Delete an image."""
    operation = await client.delete_image(image_id, idempotency_key=idempotency_key)
    await settle(client, out, operation, wait, timeout)


@client_command(group, "latest")
@folder_option
@click.option("--family", required=True)
async def latest(client: KilnClient, out: Output, *, folder_id: str, family: str) -> None:
    """The newest READY image of a family."""
    out.image(await client.latest_by_family(folder_id, family))
