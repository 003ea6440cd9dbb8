"""The paths table of the OpenAPI document: every method, what it is for, where its fields go,
the id rule of each path parameter, and the links from what it returns to what takes it."""

from typing import NamedTuple

from contracts import access, images
from contracts.events import EventStreamRequest
from contracts.ids import FOLDER_ID, IMAGE_ID, OPERATION_ID, IdRule
from contracts.operations import GetOperationRequest, ListImageOperationsResponse, Operation

IMAGES, OPERATIONS, FOLDERS, EVENTS = "ImageService", "OperationService", "FolderService", "Events"
TAGS = {
    IMAGES: "compute.v1 ImageService: images, their operations and access bindings.",
    OPERATIONS: "operation.OperationService: follow and cancel long-running operations.",
    FOLDERS: "Access bindings of a folder, which apply to every image in it.",
    EVENTS: "A folder's image events as Server-Sent Events (Kiln's own).",
}
IMAGE_PATH = {"imageId": IMAGE_ID}
IMAGE_RESOURCE = {"resourceId": IMAGE_ID}
FOLDER_RESOURCE = {"resourceId": FOLDER_ID}
OPERATION_PATH = {"operationId": OPERATION_ID}
STARTS = "Starts an operation and returns it at once; poll it with OperationService.Get."


class Method(NamedTuple):
    verb: str
    path: str
    operation_id: str
    tag: str
    summary: str
    description: str
    request: type
    placement: str  # "query" or "body": where the fields not bound in the path go
    response: type | None  # None: a text/event-stream
    ids: dict[str, IdRule]  # each path parameter's rule, checked before any lookup
    writes: bool = False  # starts an operation; takes an Idempotency-Key
    errors: tuple[int, ...] = ()  # statuses it may answer besides those every method may


def _bindings(tag: str, noun: str, path: str, ids: dict[str, IdRule]) -> list[Method]:
    prefix = "Image" if tag == IMAGES else "Folder"
    return [
        Method(
            "get", path + ":listAccessBindings", f"{prefix}_ListAccessBindings", tag,
            f"List the access bindings of {noun}", "One page of the bindings, in a stable order.",
            access.ListAccessBindingsRequest, "query", access.ListAccessBindingsResponse, ids,
        ),
        Method(
            "post", path + ":setAccessBindings", f"{prefix}_SetAccessBindings", tag,
            f"Replace the access bindings of {noun}",
            f"The bindings become exactly those given. {STARTS}",
            access.SetAccessBindingsRequest, "body", Operation, ids, writes=True,
        ),
        Method(
            "post", path + ":updateAccessBindings", f"{prefix}_UpdateAccessBindings", tag,
            f"Add or remove access bindings of {noun}",
            f"Applies ADD and REMOVE deltas in order. {STARTS}",
            access.UpdateAccessBindingsRequest, "body", Operation, ids, writes=True,
        ),
    ]  # fmt: skip


IMAGE = "/compute/v1/images/{imageId}"
METHODS: list[Method] = [
    Method(
        "get", IMAGE, "Image_Get", IMAGES, "Get an image",
        "The image, if the caller may view it; 404 otherwise.",
        images.GetImageRequest, "query", images.Image, IMAGE_PATH,
    ),
    Method(
        "get", "/compute/v1/images:latestByFamily", "Image_GetLatestByFamily", IMAGES,
        "Get the latest image of a family",
        "The newest READY image of the family in the folder; 404 if there is none.",
        images.GetImageLatestByFamilyRequest, "query", images.Image, {}, errors=(404,),
    ),
    Method(
        "get", "/compute/v1/images", "Image_List", IMAGES, "List the images of a folder",
        "One page of the folder's images, filtered and ordered as asked.",
        images.ListImagesRequest, "query", images.ListImagesResponse, {},
    ),
    Method(
        "post", "/compute/v1/images", "Image_Create", IMAGES, "Create an image",
        "Imports the image from exactly one source; the image is CREATING until the"
        f" operation ends, then READY or ERROR. Cancellable while in progress. {STARTS}",
        images.CreateImageRequest, "body", Operation, {}, writes=True,
        errors=(404,),  # an imageId source that names no image
    ),
    Method(
        "patch", IMAGE, "Image_Update", IMAGES, "Update an image",
        f"Changes the fields the updateMask names. {STARTS}",
        images.UpdateImageRequest, "body", Operation, IMAGE_PATH, writes=True,
    ),
    Method(
        "delete", IMAGE, "Image_Delete", IMAGES, "Delete an image",
        f"Irreversible: the image is DELETING, then gone. {STARTS}",
        images.DeleteImageRequest, "query", Operation, IMAGE_PATH, writes=True,
    ),
    Method(
        "get", IMAGE + "/operations", "Image_ListOperations", IMAGES,
        "List the operations of an image", "One page of the image's operations, oldest first.",
        images.ListImageOperationsRequest, "query", ListImageOperationsResponse, IMAGE_PATH,
    ),
    *_bindings(IMAGES, "an image", "/compute/v1/images/{resourceId}", IMAGE_RESOURCE),
    *_bindings(
        FOLDERS, "a folder", "/resource-manager/v1/folders/{resourceId}", FOLDER_RESOURCE
    ),
    Method(
        "get", "/operations/{operationId}", "Operation_Get", OPERATIONS, "Get an operation",
        "The operation's current state; done once it succeeded or failed.",
        GetOperationRequest, "query", Operation, OPERATION_PATH,
    ),
    *(
        Method(
            verb, "/operations/{operationId}:cancel", f"Operation_Cancel{suffix}", OPERATIONS,
            "Cancel an operation",
            "Best effort, for an image create still in progress; returns the operation in its"
            " current state. Served on GET (the descriptor) and POST (the API guide).",
            GetOperationRequest, "query", Operation, OPERATION_PATH,
        )
        for verb, suffix in (("get", ""), ("post", "Post"))
    ),
    Method(
        "get", "/kiln/v1/events", "Events_Stream", EVENTS, "Follow a folder's events",
        "Server-Sent Events: each `data:` line is one CloudEvent as published on kiln.events,"
        " `event:` its type and `id:` its position in the folder's log. Starts at the newest"
        " event, or after Last-Event-ID; replays from there, then follows live. A stream that"
        " must end sends a last `kiln.error` event holding a Status.",
        EventStreamRequest, "query", None, {}, errors=(429,),  # too many open streams
    ),
]  # fmt: skip

# Links from an operation's 200 response to the operations that take what it returns, so that
# a client (or a stateful test) follows a created image through its whole life.
_IMAGE = "$response.body#/metadata/imageId"
_ON_IMAGE = {
    "Image_Get": {"imageId": _IMAGE},
    "Image_Update": {"imageId": _IMAGE},
    "Image_Delete": {"imageId": _IMAGE},
    "Image_ListOperations": {"imageId": _IMAGE},
    "Image_ListAccessBindings": {"resourceId": _IMAGE},
    "Image_SetAccessBindings": {"resourceId": _IMAGE},
    "Image_UpdateAccessBindings": {"resourceId": _IMAGE},
}
_ON_OPERATION = {"Operation_Get": {"operationId": "$response.body#/id"}}
LINKS: dict[str, dict[str, dict[str, str]]] = {
    "Image_Create": {
        **_ON_IMAGE,
        **_ON_OPERATION,
        "Operation_Cancel": {"operationId": "$response.body#/id"},
    },
    "Image_Update": {**_ON_IMAGE, **_ON_OPERATION},
    "Image_Delete": {"Image_Get": {"imageId": _IMAGE}, **_ON_OPERATION},
    "Image_List": {
        "Image_List": {
            "folderId": "$request.query.folderId",
            "pageToken": "$response.body#/nextPageToken",
        },
        "Image_Get": {"imageId": "$response.body#/images/0/id"},
    },
    "Image_GetLatestByFamily": {"Image_Get": {"imageId": "$response.body#/id"}},
    "Image_ListOperations": {"Operation_Get": {"operationId": "$response.body#/operations/0/id"}},
    "Image_SetAccessBindings": _ON_OPERATION,
    "Image_UpdateAccessBindings": _ON_OPERATION,
}
