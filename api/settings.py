"""What the gateway needs to know beyond its database and bus."""

import msgspec


class GatewaySettings(msgspec.Struct, frozen=True, kw_only=True):
    max_body_bytes: int = 1024 * 1024
    max_streams_per_subject: int = 16  # open event streams of one caller at once
    # diskId / snapshotId sources resolve through an operator-configured directory.
    disk_source_configured: bool = False
    # Hosts, addresses or CIDRs exempt from the private-address block, on every port or on
    # one (`host:port`); the workers' list too.
    import_allowed_hosts: tuple[str, ...] = ()
    # file:// sources are read below an import root the workers are given.
    import_root_configured: bool = False
    # Authentication: HS256 tokens signed with the secret, RS256/ES256 tokens verified against
    # the keys at the JWKS URL; with neither, every API call is refused.
    token_secret: str = ""
    jwks_url: str = ""
    # When set, a token's `aud` must name this audience / its `iss` must be this issuer.
    jwt_audience: str = ""
    jwt_issuer: str = ""
    # Subjects that are admins of every folder (the bootstrap).
    admins: frozenset[str] = frozenset()
