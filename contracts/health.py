"""The body of `/readyz` on the gateway and on every worker's side port."""

import msgspec


class Readiness(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """`ready`: the store answered and no shutdown began; on a worker, also the broker is
    connected and the blob store takes writes (`blobs`, said by workers only). A gateway stays
    ready without its broker: what it accepts is committed to its outbox, and the relay
    publishes it once the broker is back, so a load balancer must not pull it."""

    ready: bool
    store: bool
    broker: bool
    draining: bool
    blobs: bool | None = None


def readiness(
    *, store: bool, broker: bool, draining: bool, blobs: bool | None = None, needs_broker: bool
) -> Readiness:
    return Readiness(
        ready=store and (broker or not needs_broker) and blobs is not False and not draining,
        store=store,
        broker=broker,
        draining=draining,
        blobs=blobs,
    )
