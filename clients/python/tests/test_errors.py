"""Errors carry the server's error_type, status and message; 429 and 503 are retried after
the server's Retry-After, a bounded number of times (attempts counted by the client's hook
and by the server's own metrics)."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from conftest import API_KEY, Stall, sigterm

from sslmem_client import (
    Client,
    ConnectionFailed,
    InvalidInput,
    Overloaded,
    SslmemError,
    Unauthorized,
    Unavailable,
)


def test_a_bad_image_is_invalid_input_with_the_servers_message(server, images):
    raw = httpx.post(
        f"{server.url}/v1/score", files=[("image", ("broken.png", b"not an image"))]
    ).json()
    retries = []
    with Client(server.url, on_retry=lambda e, w: retries.append(w)) as c:
        with pytest.raises(InvalidInput) as e:
            c.score(
                [images[0], b"not an image"], names=["good.png", "broken.png"], on_error="fail"
            )
        assert c.health(), "the server keeps serving"
        assert c.score([images[0]], pairs=1).results[0].input == images[0].name
    err = e.value
    assert isinstance(err, SslmemError)
    assert (err.status, err.error_type) == (422, "invalid_input")
    assert err.message == raw["error"] and "broken.png" in err.message
    assert err.attempts == 1 and retries == [], "4xx errors are not retried"
    assert err.request_id
    assert str(err).startswith("422 invalid_input: broken.png")


@pytest.mark.parametrize(
    "kw, needle",
    [
        ({"pairs": 0}, "pairs must lie in 1..="),
        ({"pairs": 101}, "pairs must lie in 1..="),
        ({"mode": "sideways"}, "mode: 'sideways' is not one of"),
        ({"distance": "l3"}, "distance: 'l3' is not one of"),
        ({"normalize": "max"}, "normalize: 'max' is not one of"),
    ],
)
def test_bad_parameters_are_invalid_input(server, images, kw, needle):
    with Client(server.url) as c, pytest.raises(InvalidInput, match=needle):
        c.score(images[:1], **kw)


def test_no_images_is_the_servers_invalid_input(server):
    with Client(server.url) as c:
        for call in (lambda: c.score([]), lambda: c.embed([]), lambda: c.align([])):
            with pytest.raises(InvalidInput, match="no images in the request"):
                call()


def test_api_key(auth_server, images):
    with Client(auth_server.url, api_key=API_KEY) as c:
        assert c.score(images[:1], pairs=1).results[0].input == images[0].name
        assert c.bundle().provider == "cpu"
    for key in (None, "wrong"):
        with Client(auth_server.url, api_key=key) as c:
            with pytest.raises(Unauthorized) as e:
                c.score(images[:1], pairs=1)
            assert (e.value.status, e.value.error_type) == (401, "unauthorized")
            assert "API key" in e.value.message and e.value.attempts == 1
            with pytest.raises(Unauthorized):
                c.bundle()
            assert c.health() and c.ready(), "probes need no key"


def test_overloaded_is_retried_after_retry_after_then_given_up(tiny_server, images):
    waits = []
    with Client(
        tiny_server.url, max_retries=2, on_retry=lambda e, w: waits.append((e.attempts, w))
    ) as c:
        c.limits()  # asked once, before the only permit is taken
        before = tiny_server.count("/v1/score", 429)
        with Stall(tiny_server):
            start = time.monotonic()
            with pytest.raises(Overloaded) as e:
                c.score(images[:1], pairs=1)
            elapsed = time.monotonic() - start
    err = e.value
    assert (err.status, err.error_type, err.retry_after) == (429, "overloaded", 1.0)
    assert err.attempts == 3, "max_retries=2: three attempts in all"
    assert waits == [(1, 1.0), (2, 1.0)], "each wait is the server's Retry-After: 1"
    assert elapsed >= 2.0, f"the client waited {elapsed:.2f} s, not 2 x Retry-After"
    assert tiny_server.count("/v1/score", 429) - before == 3, "the server saw three attempts"


def test_a_retried_request_succeeds_once_the_server_is_free(tiny_server, images):
    waits = []
    with Client(tiny_server.url, max_retries=10, on_retry=lambda e, w: waits.append(w)) as c:
        c.limits()
        before = tiny_server.count("/v1/score", 429)
        stall = Stall(tiny_server)
        threading.Timer(1.5, stall.release).start()
        start = time.monotonic()
        r = c.score(images[:2], pairs=2, seed=4)
        elapsed = time.monotonic() - start
        assert r == c.score(images[:2], pairs=2, seed=4)
    assert 1 <= len(waits) <= 4 and all(w == 1.0 for w in waits)
    assert elapsed >= 1.0
    assert tiny_server.count("/v1/score", 429) - before == len(waits)


def test_no_retries_when_switched_off(tiny_server, images):
    with Client(tiny_server.url, max_retries=0) as c:
        c.limits()
        with Stall(tiny_server):
            start = time.monotonic()
            with pytest.raises(Overloaded) as e:
                c.score(images[:1], pairs=1)
            assert time.monotonic() - start < 1.0
    assert e.value.attempts == 1


def test_draining_server_is_unavailable_after_bounded_retries(fresh_server, images):
    srv = fresh_server("--drain-timeout", "60")
    waits = []
    with Client(srv.url, max_retries=1, on_retry=lambda e, w: waits.append(w)) as c:
        c.limits()
        stall = Stall(srv)  # an in-flight request keeps the server draining
        sigterm(srv)
        deadline = time.monotonic() + 10
        while c.ready() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not c.ready() and c.health()
        start = time.monotonic()
        with pytest.raises(Unavailable) as e:
            c.score(images[:1], pairs=1)
        elapsed = time.monotonic() - start
        stall.release()
    err = e.value
    assert (err.status, err.error_type, err.retry_after, err.attempts) == (503, "draining", 1.0, 2)
    assert waits == [1.0] and elapsed >= 1.0
    assert srv.proc.wait(30) == 0, "the server drained and exited"
    with Client(srv.url) as c:
        with pytest.raises(ConnectionFailed) as e:
            c.score(images[:1])
        assert e.value.status is None
        assert not c.health()


def test_retry_wait_is_capped(tiny_server, images):
    waits = []
    with Client(
        tiny_server.url, max_retries=1, max_retry_wait=0.1, on_retry=lambda e, w: waits.append(w)
    ) as c:
        c.limits()
        with Stall(tiny_server):
            with pytest.raises(Overloaded):
                c.score(images[:1], pairs=1)
    assert waits == [0.1]
