"""ImageService.Get and GetLatestByFamily."""

import re

import msgspec

from contracts.enums import ImageStatus
from store import images
from store.db import Database
from tests.gateway.conftest import FOLDER, GIB, MISSING_IMAGE, OTHER_FOLDER, Api, FinishReady

RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6}|\.\d{9})?Z")
REQUEST_INFO = "type.googleapis.com/google.rpc.RequestInfo"


async def test_get_returns_every_field_in_proto3_json(api: Api, finish_ready: FinishReady) -> None:
    image_id = await api.new_image(
        name="full",
        description="everything",
        labels={"env": "prod"},
        family="ubuntu",
        minDiskSize=str(2 * GIB),
        productIds=["p1"],
        os={"type": "LINUX", "nvidia": {"driver": "535"}},
        pooled=True,
        hardwareGeneration={"legacyFeatures": {"pciTopology": "PCI_TOPOLOGY_V2"}},
    )
    await finish_ready(image_id, size=GIB)

    reply = await api.get(image_id)

    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    image = reply.json
    assert RFC3339_UTC.fullmatch(image.pop("createdAt"))
    assert image == {
        "id": image_id,
        "folderId": FOLDER,
        "name": "full",
        "description": "everything",
        "labels": {"env": "prod"},
        "family": "ubuntu",
        "size": str(GIB),
        "storageSize": str(GIB // 2),
        "minDiskSize": str(2 * GIB),
        "productIds": ["p1"],
        "status": "READY",
        "os": {"type": "LINUX", "nvidia": {"driver": "535"}},
        "pooled": True,
        "hardwareGeneration": {"legacyFeatures": {"pciTopology": "PCI_TOPOLOGY_V2"}},
    }


async def test_get_unknown_image_is_404_in_the_error_shape(api: Api) -> None:
    reply = await api.get("img00000000000000000")

    assert reply.status == 404
    body = reply.json
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == 5 and "img00000000000000000" in body["message"]
    assert body["details"] == [{"@type": REQUEST_INFO, "requestId": reply.headers["X-Request-Id"]}]


async def test_get_refuses_an_overlong_id_and_query_fields(api: Api) -> None:
    overlong = await api.get("i" * 51)
    path = f"/compute/v1/images/{MISSING_IMAGE}"
    query = await api.call("GET", path, params={"name": "x"})
    path_field = await api.call("GET", path, params={"imageId": "img2"})

    for reply, field in ((overlong, "imageId"), (query, "name"), (path_field, "imageId")):
        assert (reply.status, reply.code) == (400, 3), reply.body
        assert field in reply.message


async def _set_created_at(db: Database, image_id: str, created_at: int) -> None:
    async with db.transaction() as conn:
        image = await images.get(conn, image_id)
        assert image is not None
        moved = msgspec.structs.replace(image, created_at=created_at)
        await images.replace_many(conn, [moved])


async def test_latest_by_family_is_the_newest_ready_image(
    api: Api, finish_ready: FinishReady, db: Database
) -> None:
    old = await api.new_image(family="ubuntu", name="old")
    new = await api.new_image(family="ubuntu", name="new")
    newest_creating = await api.new_image(family="ubuntu", name="creating")
    other_family = await api.new_image(family="debian")
    other_folder = await api.new_image(family="ubuntu", folderId=OTHER_FOLDER)
    for image_id in (old, new, other_family, other_folder):
        await finish_ready(image_id)
    # Newest by createdAt, whatever the ids say.
    await _set_created_at(db, old, 2_000_000_000_000_000)
    await _set_created_at(db, new, 2_000_000_000_000_001)

    reply = await api.latest(FOLDER, "ubuntu")

    assert reply.status == 200, reply.body
    assert reply.json["id"] == new
    assert (await api.image(newest_creating))["status"] == "CREATING"
    assert (await api.latest(OTHER_FOLDER, "ubuntu")).json["id"] == other_folder


async def test_latest_by_family_breaks_a_created_at_tie_by_the_larger_id(
    api: Api, finish_ready: FinishReady, db: Database
) -> None:
    ids = [await api.new_image(family="tie") for _ in range(3)]
    for image_id in ids:
        await finish_ready(image_id)
        await _set_created_at(db, image_id, 2_000_000_000_000_000)

    assert (await api.latest(FOLDER, "tie")).json["id"] == max(ids)


async def test_latest_by_family_skips_images_that_are_not_ready(
    api: Api, finish_ready: FinishReady, db: Database
) -> None:
    ready = await api.new_image(family="skip")
    await finish_ready(ready)
    creating = await api.new_image(family="skip")
    broken = await api.new_image(family="skip")
    async with db.transaction() as conn:
        image = await images.get(conn, broken)
        assert image is not None
        image.status = ImageStatus.ERROR
        await images.replace_many(conn, [image])
    deleting = await api.new_image(family="skip")
    await finish_ready(deleting)
    assert (await api.delete(deleting)).status == 200

    reply = await api.latest(FOLDER, "skip")

    assert reply.json["id"] == ready
    assert (await api.image(creating))["status"] == "CREATING"


async def test_latest_by_family_without_a_ready_image_is_404(api: Api) -> None:
    await api.new_image(family="pending")

    for family in ("pending", "nothing"):
        reply = await api.latest(FOLDER, family)
        assert (reply.status, reply.code) == (404, 5), reply.body


async def test_latest_by_family_validates_its_query(api: Api) -> None:
    missing_folder = await api.call(
        "GET", "/compute/v1/images:latestByFamily", params={"family": "ubuntu"}
    )
    bad_family = await api.latest(FOLDER, "Ubuntu")
    long_folder = await api.latest("f" * 51, "ubuntu")
    unknown = await api.call(
        "GET", "/compute/v1/images:latestByFamily", params={"folderId": FOLDER, "x": "1"}
    )

    for reply, field in (
        (missing_folder, "folderId"),
        (bad_family, "family"),
        (long_folder, "folderId"),
        (unknown, "x"),
    ):
        assert (reply.status, reply.code) == (400, 3), reply.body
        assert field in reply.message


async def test_latest_by_family_with_an_empty_family_answers_no_image(
    api: Api, finish_ready: FinishReady
) -> None:
    image_id = await api.new_image()
    await finish_ready(image_id)

    reply = await api.latest(FOLDER, "")

    assert reply.status in (400, 404), reply.body
