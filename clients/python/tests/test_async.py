"""The async client gives what the sync one gives, retries the same way, and runs
concurrent requests."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from conftest import Stall
from PIL import Image

from sslmem_client import AsyncClient, Client, InvalidInput, Overloaded


def test_async_equals_sync(server, images):
    with Client(server.url) as c:
        want = (
            c.score(images, pairs=3, seed=9),
            c.align([(images[0], images[1])]),
            c.embed(images[:2], side="f"),
            c.bundle(),
            c.score(images, pairs=3, seed=9, batch_size=4),
        )

    async def run():
        async with AsyncClient(server.url) as a:
            got = (
                await a.score(images, pairs=3, seed=9),
                await a.align([(images[0], images[1])]),
                await a.embed(images[:2], side="f"),
                await a.bundle(),
                await a.score(images, pairs=3, seed=9, batch_size=4),
            )
            frame = await a.score_frame([Image.open(p) for p in images], pairs=3, seed=9)
            sets = await a.sets_frame(images[:2], images[2:], pairs=3, seed=9)
            return got, frame, sets, await a.health(), await a.ready()

    got, frame, sets, health, ready = asyncio.run(run())
    assert got == want
    assert list(frame["score"]) == [r.score for r in want[0].results]
    assert list(sets["score"]) == [r.score for r in want[0].results]
    assert list(sets["set"]) == ["candidate"] * 2 + ["extra"] * (len(images) - 2)
    assert health and ready


def test_async_reports_bad_images_and_takes_one_image(server, images):
    with Client(server.url) as c:
        want = c.score([images[0], b"nope", images[1]], pairs=2, seed=3)
        one = c.score(images[2], pairs=2, seed=3)

    async def run():
        async with AsyncClient(server.url) as a:
            got = await a.score([images[0], b"nope", images[1]], pairs=2, seed=3)
            with pytest.raises(InvalidInput, match="image#1"):
                await a.score([images[0], b"nope"], pairs=2, on_error="fail")
            return got, await a.score(images[2], pairs=2, seed=3)

    got, got_one = asyncio.run(run())
    assert got == want and [e.index for e in got.errors] == [1]
    assert got_one == one and len(one.results) == 1


def test_async_concurrent_requests_each_get_their_own_results(server, images):
    arrays = [np.asarray(Image.open(p)) for p in images]
    with Client(server.url) as c:
        want = [c.score([p], pairs=3, seed=5).results[0].score for p in images]

    async def run():
        async with AsyncClient(server.url) as a:
            return await asyncio.gather(*(a.score([x], pairs=3, seed=5) for x in arrays))

    got = asyncio.run(run())
    assert [r.results[0].score for r in got] == want


def test_async_errors_and_retries(tiny_server, images):
    waits = []

    async def run():
        async with AsyncClient(
            tiny_server.url, max_retries=1, on_retry=lambda e, w: waits.append(w)
        ) as a:
            with pytest.raises(InvalidInput, match="broken"):
                await a.score([b"junk"], names=["broken.png"], on_error="fail")
            before = tiny_server.count("/v1/score", 429)
            with Stall(tiny_server):
                start = time.monotonic()
                with pytest.raises(Overloaded) as e:
                    await a.score(images[:1], pairs=1)
                elapsed = time.monotonic() - start
            return e.value, elapsed, tiny_server.count("/v1/score", 429) - before

    err, elapsed, seen = asyncio.run(run())
    assert err.attempts == 2 and waits == [1.0] and elapsed >= 1.0 and seen == 2
