"""Who is calling and which request this is: built once per request by the adapter that
received it (the REST gateway's middleware and authentication fill it), only read after."""

import msgspec


class RequestContext(msgspec.Struct, frozen=True, kw_only=True):
    request_id: str
    subject: str = ""  # the token's `sub`; empty until authenticated
    admin: bool = False  # one of KILN_ADMINS: admin of every folder
    expires_at: float = 0.0  # the token's `exp` (seconds since the epoch); 0 until then
