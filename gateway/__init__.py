"""The aiohttp gateway: the Image and Operation REST API."""
