"""ImageService.Update: updateMask semantics of spec §4.5, validation, conflicts, and the done
Operation carrying the new Image."""

from typing import Any

from tests.gateway.conftest import GIB, MISSING_IMAGE, Api, FinishReady, Reply

MIB4 = 4 * 1024**2
UPDATE_METADATA = "type.googleapis.com/yandex.cloud.compute.v1.UpdateImageMetadata"
IMAGE_TYPE = "type.googleapis.com/yandex.cloud.compute.v1.Image"
ORIGINAL = {
    "name": "orig",
    "description": "original",
    "labels": {"a": "1", "b": "2"},
    "family": "fam",
    "minDiskSize": str(2 * GIB),
    "productIds": ["p1"],
    "os": {"type": "LINUX"},
}


async def _ready_image(api: Api, finish_ready: FinishReady, size: int = GIB) -> str:
    image_id = await api.new_image(**ORIGINAL)
    await finish_ready(image_id, size=size)
    return image_id


def _updated(reply: Reply) -> dict[str, Any]:
    """The Image inside a successful update Operation."""
    assert reply.status == 200, reply.body
    op = reply.json
    assert op["done"] is True and "error" not in op
    assert op["metadata"]["@type"] == UPDATE_METADATA
    image = dict(op["response"])
    assert image.pop("@type") == IMAGE_TYPE
    assert op["metadata"]["imageId"] == image["id"]
    return image


async def test_masked_fields_change_and_unmasked_fields_stay(
    api: Api, finish_ready: FinishReady
) -> None:
    image_id = await _ready_image(api, finish_ready)
    before = await api.image(image_id)

    reply = await api.update(
        image_id,
        {
            "updateMask": "name,labels",
            "name": "renamed",
            "labels": {"c": "3"},
            "description": "not in the mask",
            "minDiskSize": str(3 * GIB),
        },
    )

    image = _updated(reply)
    assert image == await api.image(image_id)
    assert image == {**before, "name": "renamed", "labels": {"c": "3"}}


async def test_a_masked_field_absent_from_the_body_is_reset(
    api: Api, finish_ready: FinishReady
) -> None:
    image_id = await _ready_image(api, finish_ready)

    image = _updated(await api.update(image_id, {"updateMask": "description,labels,name"}))

    for field in ("description", "labels", "name"):
        assert field not in image, field
    assert image["family"] == "fam" and image["minDiskSize"] == str(2 * GIB)


async def test_without_a_mask_every_updatable_field_comes_from_the_request(
    api: Api, finish_ready: FinishReady
) -> None:
    image_id = await _ready_image(api, finish_ready, size=GIB + 1)

    image = _updated(await api.update(image_id, {"description": "only this"}))

    assert image["description"] == "only this"
    assert "name" not in image and "labels" not in image
    # minDiskSize back to its default: the image's size rounded up to 4 MiB.
    assert image["minDiskSize"] == str(GIB + MIB4)
    # Fields Update does not own are untouched.
    assert (image["family"], image["productIds"], image["os"]) == ("fam", ["p1"], {"type": "LINUX"})
    assert image["status"] == "READY" and image["size"] == str(GIB + 1)


async def test_an_empty_body_resets_every_updatable_field(
    api: Api, finish_ready: FinishReady
) -> None:
    image_id = await _ready_image(api, finish_ready)

    reply = await api.call("PATCH", f"/compute/v1/images/{image_id}")

    image = _updated(reply)
    assert "name" not in image and "description" not in image and "labels" not in image


async def test_labels_replace_the_whole_map(api: Api, finish_ready: FinishReady) -> None:
    image_id = await _ready_image(api, finish_ready)

    image = _updated(await api.update(image_id, {"updateMask": "labels", "labels": {"b": "9"}}))

    assert image["labels"] == {"b": "9"}


async def test_min_disk_size_updates(api: Api, finish_ready: FinishReady) -> None:
    image_id = await _ready_image(api, finish_ready)

    raised = _updated(
        await api.update(image_id, {"updateMask": "minDiskSize", "minDiskSize": 4 * GIB})
    )
    equal = _updated(
        await api.update(image_id, {"updateMask": "minDiskSize", "minDiskSize": str(GIB)})
    )
    below = await api.update(
        image_id, {"updateMask": "minDiskSize", "minDiskSize": str(GIB - MIB4)}
    )
    out_of_range = [
        await api.update(image_id, {"updateMask": "minDiskSize", "minDiskSize": value})
        for value in (1, MIB4 - 1, str(4 * 1024**4 + 1), -5)
    ]

    assert raised["minDiskSize"] == str(4 * GIB)
    assert equal["minDiskSize"] == str(GIB)
    for reply in [below, *out_of_range]:
        assert (reply.status, reply.code) == (400, 3), reply.body
        assert "minDiskSize" in reply.message
    assert (await api.image(image_id))["minDiskSize"] == str(GIB)


async def test_mask_paths_that_cannot_be_updated_are_refused(
    api: Api, finish_ready: FinishReady
) -> None:
    image_id = await _ready_image(api, finish_ready)

    for mask in ("family", "name,family", "status", "min_disk_size", "labels.a", "nope", "*"):
        reply = await api.update(image_id, {"updateMask": mask, "name": "x"})
        assert (reply.status, reply.code) == (400, 3), (mask, reply.body)
        assert "updateMask" in reply.message
    object_mask = await api.update(image_id, {"updateMask": {"paths": ["name"]}})
    assert (object_mask.status, object_mask.code) == (400, 3)
    assert (await api.image(image_id))["name"] == "orig"


async def test_mask_paths_may_carry_spaces(api: Api, finish_ready: FinishReady) -> None:
    image_id = await _ready_image(api, finish_ready)

    image = _updated(
        await api.update(
            image_id, {"updateMask": "name, description", "name": "spaced", "description": "d"}
        )
    )

    assert (image["name"], image["description"]) == ("spaced", "d")


async def test_update_validates_its_fields(api: Api, finish_ready: FinishReady) -> None:
    image_id = await _ready_image(api, finish_ready)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"updateMask": "name", "name": "Bad"}, "name"),
        ({"updateMask": "description", "description": "d" * 257}, "description"),
        ({"updateMask": "labels", "labels": {"K": "v"}}, "labels"),
        ({"updateMask": "labels", "labels": {f"k{i}": "" for i in range(65)}}, "labels"),
        ({"updateMask": "name", "family": "x"}, "family"),
        ({"updateMask": "name", "foo": "x"}, "foo"),
        ({"updateMask": "name" + " " * 253, "name": "x"}, "updateMask"),  # 257 characters
        ({"imageId": image_id, "updateMask": "name", "name": "x"}, "imageId"),
        ({"image_id": image_id, "updateMask": "name", "name": "x"}, "image_id"),
    ]
    for body, field in cases:
        reply = await api.update(image_id, body)
        assert (reply.status, reply.code) == (400, 3), (body, reply.body)
        assert field in reply.message, (body, reply.message)
    assert (await api.image(image_id))["name"] == "orig"


async def test_renaming_onto_a_taken_name_conflicts(api: Api, finish_ready: FinishReady) -> None:
    image_id = await _ready_image(api, finish_ready)
    await api.new_image(name="taken")

    reply = await api.update(image_id, {"updateMask": "name", "name": "taken"})
    same = await api.update(image_id, {"updateMask": "name", "name": "orig"})

    assert (reply.status, reply.code) == (409, 6), reply.body
    assert _updated(same)["name"] == "orig"
    assert (await api.image(image_id))["name"] == "orig"


async def test_update_of_an_unknown_image_is_404(api: Api) -> None:
    reply = await api.update(MISSING_IMAGE, {"updateMask": "name", "name": "x"})

    assert (reply.status, reply.code) == (404, 5), reply.body


async def test_update_of_a_deleting_image_is_refused(api: Api, finish_ready: FinishReady) -> None:
    image_id = await _ready_image(api, finish_ready)
    assert (await api.delete(image_id)).status == 200

    reply = await api.update(image_id, {"updateMask": "name", "name": "late"})

    assert (reply.status, reply.code) == (400, 9), reply.body


async def test_an_update_is_listed_and_readable_as_an_operation(
    api: Api, finish_ready: FinishReady
) -> None:
    image_id = await _ready_image(api, finish_ready)

    op = (await api.update(image_id, {"updateMask": "name", "name": "n2"})).json

    assert (await api.operation(op["id"])).json == op
    listed = (await api.operations(image_id)).json["operations"]
    assert listed[0] == op


async def test_update_idempotency_key(api: Api, finish_ready: FinishReady) -> None:
    image_id = await _ready_image(api, finish_ready)
    headers = {"Idempotency-Key": "upd-1"}
    body = {"updateMask": "description", "description": "once"}
    path = f"/compute/v1/images/{image_id}"

    first = await api.call("PATCH", path, json_body=body, headers=headers)
    again = await api.call("PATCH", path, json_body=body, headers=headers)
    other = await api.call(
        "PATCH", path, json_body={**body, "description": "twice"}, headers=headers
    )

    assert first.json["id"] == again.json["id"]
    assert other.status == 409, other.body
    assert (await api.image(image_id))["description"] == "once"


async def test_an_updated_min_disk_size_is_rounded_up_to_4_mib(
    api: Api, finish_ready: FinishReady
) -> None:
    image_id = await _ready_image(api, finish_ready)

    image = _updated(
        await api.update(image_id, {"updateMask": "minDiskSize", "minDiskSize": str(5 * GIB + 1)})
    )

    assert image["minDiskSize"] == str(5 * GIB + MIB4)
