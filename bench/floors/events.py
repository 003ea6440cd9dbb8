"""The events floor: aio-pika publish → consume latency at the scenario's rate. A confirmed,
persistent publish to a durable topic exchange, consumed by a subscriber on its own connection
from an exclusive queue bound to it, as a Kiln event subscriber is; latency is the time from
just before the publish to the subscriber's receipt."""

import asyncio
import contextlib
import time

import aio_pika
import msgspec

from bench.load import LoadResult, paced

EXCHANGE = "bench.floor.events"
PAD = 700  # bytes: about the size of a Kiln CloudEvent carrying an Image


class Stamp(msgspec.Struct):
    index: int
    sent: float
    pad: str = ""


async def publish_consume(amqp: str, *, rate: float, count: int, deadline: float) -> LoadResult:
    """`count` events at `rate`/s; `latencies_ms` are publish → receipt, `errors` the lost."""
    publisher = await aio_pika.connect(amqp)
    subscriber = await aio_pika.connect(amqp)
    try:
        channel = await publisher.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(
            EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        sub_channel = await subscriber.channel()
        await sub_channel.set_qos(prefetch_count=1000)
        queue = await sub_channel.declare_queue(exclusive=True)
        await queue.bind(EXCHANGE, "compute.image.#")
        latencies: list[float] = []
        decoder = msgspec.json.Decoder(Stamp)
        encoder = msgspec.json.Encoder()
        all_in = asyncio.Event()

        async def received(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            latencies.append((time.time() - decoder.decode(message.body).sent) * 1000)
            await message.ack()
            if len(latencies) >= sent:
                all_in.set()

        await queue.consume(received)
        pad = "x" * PAD

        async def publish(index: int) -> None:
            body = encoder.encode(Stamp(index=index, sent=time.time(), pad=pad))
            await exchange.publish(
                aio_pika.Message(
                    body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=str(index)
                ),
                routing_key="compute.image.updated.bench",
            )

        sent = count + 1  # not reachable until publishing is over
        result = await paced(publish, rate=rate, count=count, deadline=deadline)
        sent = result.ok
        if len(latencies) < sent:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_in.wait(), 10.0)
        return LoadResult(
            sent=result.ok,
            ok=len(latencies),
            errors=result.ok - len(latencies) + result.errors,
            elapsed=result.elapsed,
            latencies_ms=list(latencies),
            error_samples=result.error_samples,
        )
    finally:
        await publisher.close()
        await subscriber.close()
