"""The body of `/readyz` on the gateway and on every worker's side port."""

import msgspec


class Readiness(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """`ready` is all of them: the store answered, the broker is connected, no shutdown began,
    and on a worker (the only one to say `blobs`) the blob store takes writes."""

    ready: bool
    store: bool
    broker: bool
    draining: bool
    blobs: bool | None = None


def readiness(*, store: bool, broker: bool, draining: bool, blobs: bool | None = None) -> Readiness:
    return Readiness(
        ready=store and broker and blobs is not False and not draining,
        store=store,
        broker=broker,
        draining=draining,
        blobs=blobs,
    )
