"""Create, update and delete: the checks that need no database, then state, operation and outbox
rows in one transaction (creates and updates share theirs: api/group_commit.py)."""

from api.authorization import Permission
from api.context import RequestContext
from api.create_batches import PendingCreate
from api.mutating_calls import Answer, change_image, count_started, new_operation
from api.services import Services
from api.settings import GatewaySettings
from api.update_batches import PendingUpdate
from contracts.commands import (
    CreateImage,
    CreateParams,
    ImageSource,
    params_encoder,
)
from contracts.enums import ImageStatus
from contracts.errors import FailedPrecondition, InvalidArgument
from contracts.ids import IMAGE_PREFIX, new_id
from contracts.images import (
    CreateImageRequest,
    DeleteImageRequest,
    UpdateImageRequest,
    check_disk_size,
    check_nested_texts,
)
from contracts.operations import (
    CreateImageMetadata,
    DeleteImageMetadata,
    Operation,
    UpdateImageMetadata,
)
from lifecycle import transitions
from lifecycle.changes import AcceptDelete
from runtime import urls
from runtime.clock import now_us
from store import operations
from store.idempotency import Claim
from store.images import ImageRecord, ImageSpec
from store.operations import OperationRecord, to_operation

UPDATABLE = {"name", "description", "minDiskSize", "labels"}


def _source(request: CreateImageRequest) -> ImageSource:
    given = {
        name: value
        for name, value in (
            ("imageId", request.image_id),
            ("diskId", request.disk_id),
            ("snapshotId", request.snapshot_id),
            ("uri", request.uri),
        )
        if value
    }
    if len(given) != 1:
        raise InvalidArgument(
            "source: exactly one of imageId, diskId, snapshotId, uri must be set"
            f" (got {', '.join(given) or 'none'})"
        )
    return ImageSource(
        uri=request.uri,
        image_id=request.image_id,
        disk_id=request.disk_id,
        snapshot_id=request.snapshot_id,
    )


def _check_create(settings: GatewaySettings, request: CreateImageRequest) -> ImageSource:
    source = _source(request)
    check_disk_size(request.min_disk_size)
    check_nested_texts(request)
    generation = request.hardware_generation
    if generation and generation.legacy_features and generation.generation2_features:
        raise InvalidArgument(
            "hardwareGeneration: set at most one of legacyFeatures, generation2Features"
        )
    if (source.disk_id or source.snapshot_id) and not settings.disk_source_configured:
        raise FailedPrecondition(
            "diskId and snapshotId sources are not available: no disk source is configured"
            " on this deployment (see KILN_DISK_SOURCE_DIR)"
        )
    if source.uri:
        _check_uri(source.uri, settings)
    return source


def _check_uri(uri: str, settings: GatewaySettings) -> None:
    """What is wrong with the URL before any DNS (the worker vets the resolved addresses)."""
    try:
        url = urls.check_source(uri, settings.import_allowed_hosts)
    except urls.UrlRefused as exc:
        raise InvalidArgument(f"uri: {exc.message}") from None
    if url.scheme == "file" and not settings.import_root_configured:
        raise InvalidArgument(
            "uri: file:// sources need KILN_IMPORT_ROOT, which this deployment does not set"
        )


def _new_image(request: CreateImageRequest, now: int) -> ImageRecord:
    return ImageRecord(
        id=new_id(IMAGE_PREFIX),
        folder_id=request.folder_id,
        name=request.name,
        family=request.family,
        status=ImageStatus.CREATING,
        created_at=now,
        min_disk_size=request.min_disk_size,
        spec=ImageSpec(
            description=request.description,
            labels=request.labels,
            product_ids=request.product_ids,
            os=request.os,
            pooled=request.pooled,
            hardware_generation=request.hardware_generation,
        ),
    )


async def create_image(
    context: RequestContext, request: CreateImageRequest, services: Services, key: Claim | None
) -> Operation:
    """Checked here for everything that needs no database, then written in a batch
    (api/create_batches.py)."""
    source = _check_create(services.settings, request)
    now = now_us()
    image = _new_image(request, now)
    op = new_operation(
        context,
        operations.CREATE,
        image.id,
        image.folder_id,
        "Create image",
        CreateImageMetadata(image_id=image.id),
        now,
    )
    op.params = params_encoder.encode(
        CreateParams(source=source, requested_min_disk_size=request.min_disk_size)
    )
    command = CreateImage(
        command_id=op.id, operation_id=op.id, image_id=image.id, request_id=context.request_id
    )
    pending = PendingCreate(
        context=context, image=image, op=op, command=command, source=source, key=key
    )
    return await services.creates.submit(pending)


def _mask(update_mask: str) -> set[str]:
    """The paths to change; with no mask, every updatable field (unsent ones are reset)."""
    if not update_mask.strip():
        return set(UPDATABLE)
    paths = {path.strip() for path in update_mask.split(",")}
    unknown = paths - UPDATABLE
    if unknown:
        raise InvalidArgument(
            f"updateMask: cannot update {', '.join(sorted(unknown))};"
            f" updatable fields are {', '.join(sorted(UPDATABLE))}"
        )
    return paths


async def update_image(
    context: RequestContext, request: UpdateImageRequest, services: Services, key: Claim | None
) -> Operation:
    """Checked here for everything that needs no database, then written in a batch
    (api/update_batches.py)."""
    paths = _mask(request.update_mask)
    op = new_operation(
        context,
        operations.UPDATE,
        request.image_id,
        "",
        "Update image",
        UpdateImageMetadata(image_id=request.image_id),
        now_us(),
    )
    op.done = True
    pending = PendingUpdate(context=context, request=request, paths=paths, op=op, key=key)
    return await services.updates.submit(pending)


async def delete_image(
    context: RequestContext, request: DeleteImageRequest, services: Services, key: Claim | None
) -> Answer:
    image_id, now = request.image_id, now_us()
    metadata = DeleteImageMetadata(image_id=image_id)

    def new_op(folder_id: str) -> OperationRecord:
        kind, description = operations.DELETE, "Delete image"
        return new_operation(context, kind, image_id, folder_id, description, metadata, now)

    async with services.db.transaction() as conn:
        change = await change_image(conn, context, image_id, Permission.DELETE, new_op, key, now)
        if isinstance(change, Operation):
            return Answer(change, [])
        image, op = change
        (accepted,) = await transitions.run(conn, [AcceptDelete(operation=op)], {image.id: image})
    count_started(op)
    return Answer(to_operation(op), accepted.messages)
