"""What the gateway needs to know beyond its database and bus."""

import msgspec


class GatewaySettings(msgspec.Struct, frozen=True, kw_only=True):
    max_body_bytes: int = 1024 * 1024
    # diskId / snapshotId sources resolve through an operator-configured directory.
    disk_source_configured: bool = False
