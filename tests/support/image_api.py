"""The few Image API calls the fault tests make, as a plain HTTP client does them."""

from typing import Any

import aiohttp

FOLDER = "b1gfaults"


class ImageApi:
    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.session.request(method, f"{self.base_url}{path}", **kwargs) as response:
            body = await response.json(content_type=None)
            return response.status, body

    async def create(self, name: str, uri: str, folder: str = FOLDER) -> tuple[int, Any]:
        request = {"folderId": folder, "name": name, "uri": uri}
        return await self.call("POST", "/compute/v1/images", json=request)

    async def create_ok(self, name: str, uri: str, folder: str = FOLDER) -> tuple[str, str]:
        """(image id, operation id) of an accepted create."""
        status, operation = await self.create(name, uri, folder)
        assert status == 200, (status, operation)
        return operation["metadata"]["imageId"], operation["id"]

    async def operation(self, operation_id: str) -> dict[str, Any]:
        status, body = await self.call("GET", f"/operations/{operation_id}")
        assert status == 200, (status, body)
        return body  # type: ignore[no-any-return]

    async def image(self, image_id: str) -> dict[str, Any]:
        status, body = await self.call("GET", f"/compute/v1/images/{image_id}")
        assert status == 200, (status, body)
        return body  # type: ignore[no-any-return]

    async def images(self, folder: str = FOLDER) -> list[dict[str, Any]]:
        status, body = await self.call(
            "GET", "/compute/v1/images", params={"folderId": folder, "pageSize": "1000"}
        )
        assert status == 200, (status, body)
        return body.get("images", [])  # type: ignore[no-any-return]

    async def all_done(self, operation_ids: list[str]) -> bool:
        for operation_id in operation_ids:
            if not (await self.operation(operation_id))["done"]:
                return False
        return True
