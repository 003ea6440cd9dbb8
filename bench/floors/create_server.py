"""The create-rate floor: a bare aiohttp + msgspec handler that, per request, inserts the same two
rows Kiln's create inserts (an `images` row and an `operations` row) in one asyncpg transaction
and publishes one confirmed, persistent aio-pika message to a durable quorum queue. Nothing
else: no validation beyond decoding, no outbox, no events, no idempotency, no logging.

It also answers `GET /images/{id}` (one SELECT by primary key, encoded with msgspec): the floor
of Kiln's get at the same connection count.

    python -m bench.floors.create_server --port 8001 --dsn postgresql://… --amqp amqp://…/vhost
"""

import argparse
import asyncio
import secrets
import time

import aio_pika
import asyncpg
import msgspec
from aiohttp import web

QUEUE = "bench.floor.create"
EXCHANGE = "bench.floor.commands"
POOL_SIZE = 20  # Kiln's PostgreSQL pool size
ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"

INSERT_IMAGE = (
    "INSERT INTO images (id, folder_id, name, family, status, created_at, size, storage_size,"
    " min_disk_size, blob_digest, event_seq, spec)"
    " VALUES ($1, $2, $3, '', 'CREATING', $4, 0, 0, 0, NULL, 0, '{}')"
)
INSERT_OPERATION = (
    "INSERT INTO operations (id, resource_id, kind, description, created_by, created_at,"
    " modified_at, done, metadata, params, lease_until)"
    " VALUES ($1, $2, 'image.create', 'Create image', 'bench', $3, $3, 0, $4, $5, $6)"
)
SELECT_IMAGE = (
    "SELECT id, folder_id, name, family, status, created_at, size, storage_size,"
    " min_disk_size, blob_digest, event_seq, spec FROM images WHERE id = $1"
)


class CreateBody(msgspec.Struct, rename="camel"):
    folder_id: str
    image_id: str = ""
    name: str = ""


class Operation(msgspec.Struct, rename="camel"):
    id: str
    description: str
    created_at: int
    done: bool
    metadata: dict[str, str]


class Image(msgspec.Struct, rename="camel"):
    id: str
    folder_id: str
    name: str
    family: str
    status: str
    created_at: int
    size: int
    storage_size: int
    min_disk_size: int
    blob_digest: str | None
    event_seq: int
    spec: str


decoder = msgspec.json.Decoder(CreateBody)
encoder = msgspec.json.Encoder()
POOL = web.AppKey("pool", asyncpg.Pool)
EXCHANGE_KEY = web.AppKey("exchange", aio_pika.abc.AbstractExchange)


def new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(ID_ALPHABET) for _ in range(17))


async def create(request: web.Request) -> web.Response:
    body = decoder.decode(await request.read())
    image_id, operation_id = new_id("img"), new_id("opr")
    now = time.time_ns() // 1000
    metadata = {"imageId": image_id}
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await conn.execute(INSERT_IMAGE, image_id, body.folder_id, body.name, now)
        await conn.execute(
            INSERT_OPERATION,
            operation_id,
            image_id,
            now,
            encoder.encode(metadata).decode(),
            encoder.encode({"source": {"image_id": body.image_id}}).decode(),
            now + 60_000_000,
        )
    command = {"kind": "image.create", "operation_id": operation_id, "image_id": image_id}
    await request.app[EXCHANGE_KEY].publish(
        aio_pika.Message(
            encoder.encode(command),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=operation_id,
            content_type="application/json",
        ),
        routing_key=QUEUE,
    )
    operation = Operation(
        id=operation_id, description="Create image", created_at=now, done=False, metadata=metadata
    )
    return web.Response(body=encoder.encode(operation), content_type="application/json")


async def get(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        row = await conn.fetchrow(SELECT_IMAGE, request.match_info["id"])
    if row is None:
        raise web.HTTPNotFound()
    return web.Response(body=encoder.encode(Image(**dict(row))), content_type="application/json")


async def app_for(dsn: str, amqp: str) -> web.Application:
    app = web.Application()
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=POOL_SIZE)
    connection = await aio_pika.connect(amqp)
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True)
    queue = await channel.declare_queue(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
    await queue.bind(exchange, QUEUE)
    app[POOL], app[EXCHANGE_KEY] = pool, exchange

    async def close(_: web.Application) -> None:
        await connection.close()
        await pool.close()

    app.on_cleanup.append(close)
    app.router.add_post("/images", create)
    app.router.add_get("/images/{id}", get)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--amqp", required=True)
    args = parser.parse_args()
    loop = asyncio.new_event_loop()
    app = loop.run_until_complete(app_for(args.dsn, args.amqp))
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None, loop=loop)


if __name__ == "__main__":
    main()
