"""`Os.type` defaults to LINUX (spec §5 Os): an image created without `os`, or with an `os`
that names no type, reports LINUX wherever the API shows the image."""

from typing import Any

from tests.gateway.conftest import FOLDER, Api, FinishReady

LINUX = {"type": "LINUX"}


async def shown(api: Api, image_id: str, family: str) -> list[dict[str, Any]]:
    """The image as get, list, latestByFamily and an update's operation response show it."""
    listed = (await api.list()).json["images"]
    latest = (await api.latest(FOLDER, family)).json
    update = await api.update(image_id, {"updateMask": "description", "description": "d"})
    assert update.json["done"], update.body
    return [await api.image(image_id), *listed, latest, update.json["response"]]


async def test_an_image_created_without_os_reports_linux(
    api: Api, finish_ready: FinishReady
) -> None:
    image_id = await api.new_image(family="plain")
    creating = await api.image(image_id)
    await finish_ready(image_id)

    operation = (await api.operations(image_id)).json["operations"][-1]
    outputs = [creating, operation["response"], *await shown(api, image_id, "plain")]
    assert [output["id"] for output in outputs] == [image_id] * len(outputs)
    assert [output["os"] for output in outputs] == [LINUX] * len(outputs)


async def test_an_os_without_type_reports_linux_and_a_given_type_stays(
    api: Api, finish_ready: FinishReady
) -> None:
    nvidia = await api.new_image(os={"nvidia": {"driver": "535"}})
    unspecified = await api.new_image(os={"type": "TYPE_UNSPECIFIED"})
    windows = await api.new_image(os={"type": "WINDOWS"})

    assert (await api.image(nvidia))["os"] == {"type": "LINUX", "nvidia": {"driver": "535"}}
    assert (await api.image(unspecified))["os"] == LINUX
    assert (await api.image(windows))["os"] == {"type": "WINDOWS"}
