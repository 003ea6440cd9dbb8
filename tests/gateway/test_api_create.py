"""ImageService.Create: sources, every validation rule, proto3 JSON parsing, uniqueness,
the Operation it answers with, and Idempotency-Key."""

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from bus.memory import MemoryBus
from contracts.names import CREATE_QUEUE
from gateway.app import create_app
from store.db import Database
from support.auth import bearer
from support.auth import gateway_settings as auth_settings
from tests.gateway.conftest import FOLDER, OTHER_FOLDER, URI, Api, FinishReady, Reply

MIB4 = 4 * 1024**2
TIB4 = 4 * 1024**4
LONGEST_URI = f"{URI}?{'s' * (8192 - len(URI) - 1)}"  # 8192 characters
CREATE_METADATA = "type.googleapis.com/yandex.cloud.compute.v1.CreateImageMetadata"


def assert_invalid(reply: Reply, field: str, case: object = "") -> None:
    """400 INVALID_ARGUMENT whose message names `field`."""
    assert reply.status == 400, (case, reply.body)
    assert reply.code == 3, (case, reply.body)
    assert field in reply.message, (case, field, reply.message)


async def test_create_answers_a_running_operation_and_a_creating_image(api: Api) -> None:
    reply = await api.create(name="web-1", description="base", labels={"env": "prod"})

    assert reply.status == 200
    op = reply.json
    assert op["done"] is False
    assert "error" not in op and "response" not in op
    assert op["description"] == "Create image"
    assert op["metadata"]["@type"] == CREATE_METADATA
    assert set(op["metadata"]) == {"@type", "imageId"}
    image = await api.image(op["metadata"]["imageId"])
    assert image["status"] == "CREATING"
    assert (image["folderId"], image["name"], image["description"]) == (FOLDER, "web-1", "base")
    assert image["labels"] == {"env": "prod"}
    fetched = await api.operation(op["id"])
    assert fetched.status == 200 and fetched.json == op


async def test_create_publishes_a_create_command(api: Api, bus: Any) -> None:
    """The command reaches the create queue (no worker consumes it in these tests)."""
    received = []

    async def handler(delivery: Any) -> None:
        received.append(delivery)

    subscription = await bus.consume(CREATE_QUEUE, handler, prefetch=10)
    try:
        image_id = await api.new_image()
        for _ in range(100):
            if received:
                break
            await asyncio.sleep(0)  # let the queue feed the handler
    finally:
        await subscription.stop()
    assert len(received) == 1
    assert image_id.encode() in received[0].body


async def test_each_of_the_uri_and_image_sources_is_accepted(
    api: Api, finish_ready: FinishReady
) -> None:
    source = await api.new_image(uri=URI)
    await finish_ready(source)

    reply = await api.create_raw({"folderId": FOLDER, "imageId": source})

    assert reply.status == 200, reply.body
    assert (await api.image(reply.json["metadata"]["imageId"]))["status"] == "CREATING"


async def test_exactly_one_source_is_required(api: Api) -> None:
    cases: list[dict[str, str]] = [
        {},
        {"uri": ""},
        {"uri": URI, "imageId": "img1"},
        {"diskId": "d1", "snapshotId": "s1"},
        {"uri": URI, "diskId": "d1", "snapshotId": "s1", "imageId": "i1"},
    ]
    for sources in cases:
        assert_invalid(await api.create_raw({"folderId": FOLDER, **sources}), "source", sources)


async def test_disk_and_snapshot_sources_need_a_configured_disk_source(api: Api) -> None:
    for source in ("diskId", "snapshotId"):
        reply = await api.create_raw({"folderId": FOLDER, source: "fhm0000000000000000"})

        assert (reply.status, reply.code) == (400, 9), reply.body
        assert source in reply.message, reply.message


async def test_image_source_must_exist_and_be_ready(api: Api) -> None:
    missing = await api.create_raw({"folderId": FOLDER, "imageId": "img-missing"})
    creating = await api.new_image()
    not_ready = await api.create_raw({"folderId": FOLDER, "imageId": creating})

    assert (missing.status, missing.code) == (404, 5), missing.body
    assert (not_ready.status, not_ready.code) == (400, 9), not_ready.body
    assert "READY" in not_ready.message


async def test_field_rules_are_enforced_naming_the_field(api: Api) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"folderId": ""}, "folderId"),
        ({"folderId": "f" * 51}, "folderId"),
        ({"name": "Upper"}, "name"),
        ({"name": "1abc"}, "name"),
        ({"name": "ends-"}, "name"),
        ({"name": "a" * 64}, "name"),
        ({"name": "with space"}, "name"),
        ({"name": "abc\n"}, "name"),
        ({"description": "d" * 257}, "description"),
        ({"labels": {"Key": "v"}}, "labels"),
        ({"labels": {"1key": "v"}}, "labels"),
        ({"labels": {"": "v"}}, "labels"),
        ({"labels": {"k" * 64: "v"}}, "labels"),
        ({"labels": {"key": "Value"}}, "labels"),
        ({"labels": {"key": "v" * 64}}, "labels"),
        ({"labels": {"key": "a b"}}, "labels"),
        ({"labels": {f"k{i}": "v" for i in range(65)}}, "labels"),
        ({"labels": {"key": 1}}, "labels"),
        ({"labels": ["key"]}, "labels"),
        ({"family": "ab"}, "family"),
        ({"family": "Abc"}, "family"),
        ({"family": "abc-"}, "family"),
        ({"family": "a_bc"}, "family"),
        ({"family": "f" * 64}, "family"),
        ({"minDiskSize": 1}, "minDiskSize"),
        ({"minDiskSize": MIB4 - 1}, "minDiskSize"),
        ({"minDiskSize": str(TIB4 + 1)}, "minDiskSize"),
        ({"minDiskSize": -1}, "minDiskSize"),
        ({"minDiskSize": "4MiB"}, "minDiskSize"),
        ({"minDiskSize": 4194304.5}, "minDiskSize"),
        ({"productIds": ["p" * 51]}, "productIds"),
        ({"productIds": "p1"}, "productIds"),
        ({"productIds": [f"p{i}" for i in range(65)]}, "productIds"),
        ({"uri": LONGEST_URI + "s"}, "uri"),
        ({"uri": f"{URI}?{'s' * 60_000}"}, "uri"),
        ({"os": {"nvidia": {"driver": "d" * 65}}}, "os.nvidia.driver"),
        (
            {"hardwareGeneration": {"generation2Features": {"secureBootTemplateId": "t" * 65}}},
            "hardwareGeneration.generation2Features.secureBootTemplateId",
        ),
        ({"os": {"type": "BSD"}}, "os.type"),
        ({"os": {"type": 7}}, "os.type"),
        ({"os": "LINUX"}, "os"),
        ({"name": 5}, "name"),
        ({"imageId": "i" * 51, "uri": ""}, "imageId"),
    ]
    for fields, field in cases:
        assert_invalid(await api.create(**fields), field, fields)


async def test_boundary_values_are_accepted(api: Api) -> None:
    cases: list[dict[str, Any]] = [
        {"name": "a"},
        {"name": "a" + "-_x9" * 15 + "b0"},  # 63 characters
        {"description": "d" * 256},
        {"labels": {f"k{i}": "v" for i in range(64)}},
        {"labels": {"k" * 63: "v" * 63, "a-_./@0z": "-_./@0z", "empty": ""}},
        {"family": "abc"},
        {"family": "f" + "-0" * 30 + "z"},  # 63 characters
        {"family": ""},
        {"minDiskSize": 0},
        {"minDiskSize": MIB4},
        {"minDiskSize": str(TIB4)},
        {"productIds": ["p" * 50, "f2e"]},
        {"productIds": [f"p{i}" for i in range(64)]},
        {"uri": LONGEST_URI},
        {"os": {"nvidia": {"driver": "d" * 64}}},
        {"hardwareGeneration": {"generation2Features": {"secureBootTemplateId": "t" * 64}}},
        {"os": {"type": "WINDOWS", "nvidia": {"driver": "535"}}},
        {"pooled": True},
        {"hardwareGeneration": {"legacyFeatures": {"pciTopology": "PCI_TOPOLOGY_V2"}}},
        {"hardwareGeneration": {"generation2Features": {}}},
    ]
    for fields in cases:
        reply = await api.create(**fields)
        assert reply.status == 200, (fields, reply.body)


async def test_accepted_fields_are_stored_and_returned(api: Api) -> None:
    fields = {
        "name": "full",
        "description": "all fields",
        "labels": {"env": "prod", "team": "a"},
        "family": "ubuntu-2204",
        "minDiskSize": str(8 * MIB4),
        "productIds": ["f2e1", "f2e2"],
        "os": {"type": "WINDOWS", "nvidia": {"driver": "535"}},
        "pooled": True,
        "hardwareGeneration": {"generation2Features": {"secureBootTemplateId": "t1"}},
    }

    image = await api.image(await api.new_image(**fields))

    assert {key: image[key] for key in fields} == fields


async def test_unknown_fields_are_refused_naming_them(api: Api) -> None:
    for path in ("foo", "os.foo", "os.nvidia.foo", "hardwareGeneration.legacyFeatures.foo"):
        body: dict[str, Any] = {"folderId": FOLDER, "uri": URI}
        nested: dict[str, Any] = body
        *parents, leaf = path.split(".")
        for part in parents:
            nested = nested.setdefault(part, {})
        nested[leaf] = 1

        assert_invalid(await api.create_raw(body), path)


async def test_proto_field_names_are_accepted(api: Api) -> None:
    body = {
        "folder_id": FOLDER,
        "uri": URI,
        "min_disk_size": str(MIB4),
        "product_ids": ["p1"],
        "hardware_generation": {"legacy_features": {"pci_topology": "PCI_TOPOLOGY_V1"}},
    }

    reply = await api.create_raw(body)

    assert reply.status == 200, reply.body
    image = await api.image(reply.json["metadata"]["imageId"])
    assert image["folderId"] == FOLDER and image["minDiskSize"] == str(MIB4)
    assert image["productIds"] == ["p1"]
    assert image["hardwareGeneration"] == {"legacyFeatures": {"pciTopology": "PCI_TOPOLOGY_V1"}}


async def test_one_field_under_two_spellings_is_refused(api: Api) -> None:
    reply = await api.create_raw({"folderId": FOLDER, "folder_id": OTHER_FOLDER, "uri": URI})

    assert_invalid(reply, "folder")


async def test_a_key_repeated_in_one_object_is_refused(api: Api) -> None:
    body = f'{{"folderId": "{FOLDER}", "uri": "{URI}", "name": "a", "name": "b"}}'

    reply = await api.call("POST", "/compute/v1/images", data=body)
    nested = await api.call(
        "POST",
        "/compute/v1/images",
        data=f'{{"folderId": "{FOLDER}", "uri": "{URI}", "os": {{"type": 1, "type": 2}}}}',
    )

    assert_invalid(reply, "name")
    assert_invalid(nested, "type")


async def test_int64_is_accepted_as_string_or_number(api: Api) -> None:
    for value in (str(MIB4), MIB4, str(TIB4), TIB4):
        image = await api.image(await api.new_image(minDiskSize=value))

        assert image["minDiskSize"] == str(value)


async def test_enums_are_accepted_by_number(api: Api) -> None:
    image_id = await api.new_image(
        os={"type": 2}, hardwareGeneration={"legacyFeatures": {"pciTopology": 1}}
    )

    image = await api.image(image_id)
    assert image["os"] == {"type": "WINDOWS"}
    assert image["hardwareGeneration"]["legacyFeatures"] == {"pciTopology": "PCI_TOPOLOGY_V1"}


async def test_null_means_unset(api: Api) -> None:
    reply = await api.create(
        name=None, description=None, labels=None, minDiskSize=None, os=None, imageId=None
    )

    assert reply.status == 200, reply.body
    image = await api.image(reply.json["metadata"]["imageId"])
    assert "name" not in image and "description" not in image and "labels" not in image


async def test_both_hardware_generations_are_refused(api: Api) -> None:
    reply = await api.create(hardwareGeneration={"legacyFeatures": {}, "generation2Features": {}})

    assert_invalid(reply, "hardwareGeneration")


async def test_a_name_is_unique_within_a_folder(api: Api) -> None:
    await api.new_image(name="dup")

    again = await api.create(name="dup")
    elsewhere = await api.create(name="dup", folderId=OTHER_FOLDER)

    assert (again.status, again.code) == (409, 6), again.body
    assert "dup" in again.message
    assert elsewhere.status == 200, elsewhere.body


async def test_unnamed_images_never_collide(api: Api) -> None:
    for _ in range(3):
        assert (await api.create()).status == 200


async def test_a_deleting_image_still_holds_its_name(api: Api) -> None:
    """DESIGN: unique among the folder's images that are not deleted. A DELETING image
    still exists (GET answers it) until its bytes are released, so its name stays taken."""
    image_id = await api.new_image(name="held")
    assert (await api.delete(image_id)).status == 200

    reply = await api.create(name="held")

    assert (reply.status, reply.code) == (409, 6), reply.body


async def test_a_name_is_free_again_once_its_image_is_gone(api: Api) -> None:
    """A create cancelled before any worker took it removes the image: the name frees."""
    first = await api.create(name="reuse")
    assert (await api.cancel(first.json["id"])).json["done"] is True

    reply = await api.create(name="reuse")

    assert reply.status == 200, reply.body


async def test_idempotency_key_replays_the_same_operation(api: Api) -> None:
    headers = {"Idempotency-Key": "2f1e4cbe-8c5a-4a59-9a3b-4c1a7f0d6e11"}

    first = await api.create(headers=headers, name="idem")
    second = await api.create(headers=headers, name="idem")

    assert first.status == second.status == 200, second.body
    assert second.json["id"] == first.json["id"]
    assert second.json["metadata"] == first.json["metadata"]
    listed = await api.list()
    assert [image["id"] for image in listed.json["images"]] == [first.json["metadata"]["imageId"]]


async def test_idempotency_key_with_a_different_request_conflicts(api: Api) -> None:
    headers = {"Idempotency-Key": "7d6c8e3a-0000-4000-8000-000000000001"}
    first = await api.create(headers=headers, name="one")

    other_body = await api.create(headers=headers, name="two")
    other_method = await api.delete(first.json["metadata"]["imageId"], headers=headers)

    assert other_body.status == 409, other_body.body
    assert other_method.status == 409, other_method.body
    assert len((await api.list()).json["images"]) == 1
    assert (await api.image(first.json["metadata"]["imageId"]))["status"] == "CREATING"


async def test_different_idempotency_keys_create_different_images(api: Api) -> None:
    one = await api.create(headers={"Idempotency-Key": "k-1"})
    two = await api.create(headers={"Idempotency-Key": "k-2"})

    assert one.json["id"] != two.json["id"]
    assert len((await api.list()).json["images"]) == 2


async def test_an_overlong_idempotency_key_is_refused(api: Api) -> None:
    reply = await api.create(headers={"Idempotency-Key": "k" * 129})

    assert_invalid(reply, "Idempotency-Key")


async def test_concurrent_creates_with_one_idempotency_key_make_one_image(api: Api) -> None:
    headers = {"Idempotency-Key": "race-1"}

    replies = await asyncio.gather(*(api.create(headers=headers, name="race") for _ in range(5)))

    assert {reply.status for reply in replies} == {200}, [r.body for r in replies]
    assert len({reply.json["id"] for reply in replies}) == 1
    assert len((await api.list()).json["images"]) == 1


async def test_concurrent_creates_of_one_name_make_one_image(api: Api) -> None:
    replies = await asyncio.gather(*(api.create(name="contested") for _ in range(5)))

    assert sorted(reply.status for reply in replies) == [200, 409, 409, 409, 409], [
        r.body for r in replies
    ]
    assert len((await api.list()).json["images"]) == 1


async def test_disk_and_snapshot_sources_work_once_a_disk_source_is_configured(
    db: Database, bus: MemoryBus
) -> None:
    app = await create_app(auth_settings(disk_source_configured=True), db, bus)
    async with TestClient(TestServer(app), headers=bearer()) as client:
        api = Api(client, db, "disk-source")
        for source in ("diskId", "snapshotId"):
            reply = await api.create_raw({"folderId": FOLDER, source: "fhm0000000000000000"})

            assert reply.status == 200, reply.body
            assert (await api.image(reply.json["metadata"]["imageId"]))["status"] == "CREATING"


async def test_a_file_uri_needs_an_import_root(api: Api, db: Database, bus: MemoryBus) -> None:
    uri = "file:///srv/images/disk.qcow2"

    refused = await api.create(uri=uri)
    app = await create_app(auth_settings(import_root_configured=True), db, bus)
    async with TestClient(TestServer(app), headers=bearer()) as client:
        accepted = await Api(client, db, "import-root").create(uri=uri)

    assert_invalid(refused, "uri")
    assert "file:// sources need KILN_IMPORT_ROOT" in refused.message
    assert accepted.status == 200, accepted.body


async def test_an_allow_listed_host_port_exempts_that_port_only(
    db: Database, bus: MemoryBus
) -> None:
    settings = auth_settings(import_allowed_hosts=("127.0.0.1:8080", "[::1]:8443"))
    app = await create_app(settings, db, bus)
    async with TestClient(TestServer(app), headers=bearer()) as client:
        api = Api(client, db, "allowed-port")
        accepted = [
            await api.create(uri=uri)
            for uri in ("http://127.0.0.1:8080/disk.qcow2", "https://[::1]:8443/disk.qcow2")
        ]
        refused = [
            await api.create(uri=uri)
            for uri in (
                "http://127.0.0.1:8081/disk.qcow2",
                "http://127.0.0.1/disk.qcow2",
                "https://[::1]/disk.qcow2",
                "http://[::1]:8080/disk.qcow2",
            )
        ]

    assert [reply.status for reply in accepted] == [200, 200], [r.body for r in accepted]
    for reply in refused:
        assert_invalid(reply, "uri")
        assert reply.message.endswith(" is loopback"), reply.message
