"""Group commit's queue (runtime/batching.py): what a writer is handed, and that no request
waits forever whatever a batch's writing does."""

import asyncio

import pytest

from runtime.batching import Batches, Waiting, answer


class Interrupted(Exception):
    pass


def _batches(write: object) -> Batches[str, str]:
    return Batches(write, Interrupted, name="test", max_batch=10, max_writers=1)  # type: ignore[arg-type]


async def _settle_loop() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


class GatedWriter:
    """Writes each batch it is handed once `gate` is set, answering each request with itself."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.handed: list[list[str]] = []

    async def __call__(self, batch: list[Waiting[str, str]]) -> None:
        self.handed.append([request for request, _ in batch])
        await self.gate.wait()
        for request, future in batch:
            answer(future, request)


@pytest.mark.parametrize("kept", [["kept"], []])
async def test_a_request_given_up_before_its_batch_begins_is_not_written(kept: list[str]) -> None:
    write = GatedWriter()
    batches = _batches(write)
    first = asyncio.create_task(batches.submit("first"))
    await _settle_loop()  # the writer holds ["first"] at the gate
    given_up = asyncio.create_task(batches.submit("given up"))
    waiting = [asyncio.create_task(batches.submit(request)) for request in kept]
    await _settle_loop()
    given_up.cancel()
    write.gate.set()

    assert [await first, *[await task for task in waiting]] == ["first", *kept]
    await batches.close()
    # A batch left with no request is not handed to the writer at all.
    assert write.handed == ([["first"], kept] if kept else [["first"]])


async def test_a_failed_batch_strands_none_of_the_requests_behind_it() -> None:
    gate, calls = asyncio.Event(), []

    async def write(batch: list[Waiting[str, str]]) -> None:
        calls.append([request for request, _ in batch])
        await gate.wait()
        if len(calls) == 1:
            raise RuntimeError("the writer broke")
        for request, future in batch:
            answer(future, request)

    batches = _batches(write)
    first = asyncio.create_task(batches.submit("first"))
    await _settle_loop()
    second = asyncio.create_task(batches.submit("second"))
    await _settle_loop()
    gate.set()

    with pytest.raises(Interrupted):
        await first
    assert await asyncio.wait_for(second, 2.0) == "second"
    assert calls == [["first"], ["second"]]
