"""`python -m bench.worker_memory [--count N] [--size-mib S] [--prefetch P] [--fetches F]`:
the peak RSS of one worker importing N raw images of S MiB that are all created at once, the
worst case for a worker's memory (the `large-import` scenario imports one image at a time).
Starts its own database, vhost, image server, gateway and worker in a temporary directory,
and removes all of them afterwards."""

import argparse
import asyncio
import secrets
import tempfile
import time
from pathlib import Path

import msgspec

from bench.config import MiB
from bench.load import Http
from bench.processes import (
    Kiln,
    children,
    image_source,
    postgres_database,
    rabbit_vhost,
)
from bench.scenarios.common import IMAGES, wait_terminal

FOLDER = "worker-memory"


async def measure(args: argparse.Namespace, workdir: Path) -> str:
    async with postgres_database() as dsn, rabbit_vhost() as amqp, children() as started:
        source = await image_source(started, workdir)
        kiln = Kiln(workdir, started, database_url=dsn, broker_url=amqp)
        gateway = await kiln.gateway()
        worker = await kiln.worker(worker_prefetch=args.prefetch, worker_fetches=args.fetches)
        idle = worker.rss()
        if not worker.reset_peak():
            raise RuntimeError("cannot reset the worker's peak RSS (/proc/<pid>/clear_refs)")
        salt, size = secrets.token_hex(4), args.size_mib * MiB
        uris = [f"{source.url}/raw/{salt}-{i}/{size}.raw" for i in range(args.count)]
        bodies = [msgspec.json.encode({"folderId": FOLDER, "uri": uri}) for uri in uris]
        begin = time.perf_counter()
        async with Http(gateway.url, kiln.headers, args.count) as http:
            await asyncio.gather(*(http.post(IMAGES, body) for body in bodies))
        counts = await wait_terminal(dsn, FOLDER, args.count, args.deadline)
        return (
            f"{args.count} imports of {args.size_mib} MiB at once, prefetch {args.prefetch},"
            f" fetches {args.fetches}: {counts} in {time.perf_counter() - begin:.1f} s;"
            f" worker RSS idle {idle / 10**6:.1f} MB, peak {worker.peak_rss() / 10**6:.1f} MB"
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.worker_memory", description=__doc__)
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--size-mib", type=int, default=128)
    parser.add_argument("--prefetch", type=int, default=16)
    parser.add_argument("--fetches", type=int, default=16)
    parser.add_argument("--deadline", type=float, default=600.0, help="seconds for all to end")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kiln-bench-memory-") as workdir:
        print(asyncio.run(measure(args, Path(workdir))))


if __name__ == "__main__":
    main()
