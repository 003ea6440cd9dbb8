"""The local HTTP server images are imported from (run as its own process, from memory):

    GET /qcow2/{size}/{salt}/{index}.qcow2   a qcow2 file of `size` bytes (one of --qcow2-sizes),
                                             its data unique to (salt, index)
    GET /raw/{salt}/{size}.raw               `size` bytes of a raw disk, generated as it streams
    GET /info                                {"qcow2": {"<size>": <actual file bytes>}}

Every file differs from every other (so content addressing never skips a write); the salt
keeps one run's files distinct from another's.

    python -m bench.sources --port 8000 --workdir /tmp/x --qcow2-sizes 262144,1048576
"""

import argparse
import hashlib
import os
import subprocess
from pathlib import Path

from aiohttp import web

MARK = b"kiln-bench-mark!"  # 16 bytes planted in the data, replaced by each file's own
KiB = 1 << 10
RAW_BLOCK = 16 << 20  # the raw stream repeats this random block
RAW_CHUNK = 1 << 20
RAW_HEAD = 64 * KiB
QEMU_CONVERT = (
    "qemu-img",
    "convert",
    "-f",
    "raw",
    "-O",
    "qcow2",
    "-o",
    "cluster_size=4096",
)  # zeros at the start: no partition table, no format magic


def unique(salt: str, index: str) -> bytes:
    return hashlib.sha256(f"{salt}/{index}".encode()).digest()[:16]


def build_qcow2(workdir: Path, size: int) -> tuple[bytes, int]:
    """A qcow2 file (4 KiB clusters) of at most `size` bytes, as large as fits, with random
    data; and the offset of MARK inside it."""
    raw, out = workdir / f"template-{size}.raw", workdir / f"template-{size}.qcow2"
    data_size = size - 16 * KiB
    while data_size > 0:
        data = bytearray(os.urandom(data_size))
        data[-4 * KiB : -4 * KiB + len(MARK)] = MARK
        raw.write_bytes(data)
        subprocess.run(
            [*QEMU_CONVERT, str(raw), str(out)],
            check=True,
            capture_output=True,
        )
        image = out.read_bytes()
        if len(image) <= size:
            raw.unlink()
            offset = image.find(MARK)
            if offset < 0:
                raise RuntimeError("marker not found in the qcow2 template")
            return image, offset
        data_size -= 4 * KiB
    raise RuntimeError(f"no qcow2 fits in {size} bytes")


class Source:
    def __init__(self, templates: dict[int, tuple[bytes, int]]) -> None:
        self.templates = templates
        self.block = bytearray(os.urandom(RAW_BLOCK))
        self.block[:RAW_HEAD] = bytes(RAW_HEAD)
        self.served = 0

    async def qcow2(self, request: web.Request) -> web.Response:
        size = int(request.match_info["size"])
        if size not in self.templates:
            raise web.HTTPNotFound()
        template, offset = self.templates[size]
        body = bytearray(template)
        body[offset : offset + len(MARK)] = unique(
            request.match_info["salt"], request.match_info["index"]
        )
        self.served += 1
        return web.Response(body=bytes(body), content_type="application/octet-stream")

    async def info(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"qcow2": {str(size): len(image) for size, (image, _) in self.templates.items()}}
        )

    async def raw(self, request: web.Request) -> web.StreamResponse:
        size = int(request.match_info["size"])
        if size % 512:
            raise web.HTTPBadRequest(text="size must be whole sectors")
        first = bytearray(self.block)
        first[RAW_HEAD : RAW_HEAD + 16] = unique(request.match_info["salt"], "raw")
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = size
        await response.prepare(request)
        view, first_view = memoryview(self.block), memoryview(first)
        sent = 0
        while sent < size:
            at = sent % RAW_BLOCK
            length = min(RAW_CHUNK, size - sent, RAW_BLOCK - at)
            source = first_view if sent < RAW_BLOCK else view
            await response.write(source[at : at + length])
            sent += length
        await response.write_eof()
        self.served += 1
        return response


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--qcow2-sizes", default="262144,1048576")
    args = parser.parse_args()
    sizes = [int(s) for s in args.qcow2_sizes.split(",") if s]
    source = Source({size: build_qcow2(args.workdir, size) for size in sizes})
    app = web.Application()
    app.router.add_get("/qcow2/{size:\\d+}/{salt}/{index}.qcow2", source.qcow2)
    app.router.add_get("/info", source.info)
    app.router.add_get("/raw/{salt}/{size:\\d+}.raw", source.raw)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
