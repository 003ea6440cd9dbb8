"""The body of `/readyz` on the gateway and on every worker's side port."""

import msgspec


class Readiness(msgspec.Struct, frozen=True, kw_only=True):
    """`ready` is all three: the store answered, the broker is connected, no shutdown began."""

    ready: bool
    store: bool
    broker: bool
    draining: bool


def readiness(*, store: bool, broker: bool, draining: bool) -> Readiness:
    return Readiness(
        ready=store and broker and not draining, store=store, broker=broker, draining=draining
    )
