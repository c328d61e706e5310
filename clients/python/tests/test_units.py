"""The client's pure parts, without a server: planning requests, Retry-After, error classes."""

from __future__ import annotations

import email.utils
import time

import pytest

from sslmem_client import (
    BadRequest,
    InvalidInput,
    Overloaded,
    ServerError,
    Unavailable,
)
from sslmem_client.client import _body, _plan, _retry_after
from sslmem_client.errors import error_class


def test_plan_respects_count_bytes_and_pairs():
    ups = [(f"{i}.png", b"x" * 1000) for i in range(7)]
    assert [len(c) for c in _plan(ups, 3, 10**6)] == [3, 3, 1]
    # 4,096 bytes are kept for framing; each part counts its bytes, name and 256 more.
    assert [len(c) for c in _plan(ups, 64, 4096 + 2 * 1261)] == [2, 2, 2, 1]
    # One image over the budget still goes (alone): the server then says 413.
    assert [len(c) for c in _plan([("big", b"x" * 10**5)] + ups[:2], 64, 8000)] == [1, 2]
    # Pairs stay together.
    assert [len(c) for c in _plan(ups[:6], 3, 10**6, group=2)] == [2, 2, 2]
    assert _plan([], 3, 10**6) == []


def test_names_that_multipart_cannot_carry_go_as_json():
    ups = [("a.png", b"\x89PNG"), ('b "1".png', b"GIF8")]
    assert "files" in _body(ups[:1], align=False)
    j = _body(ups, align=False)["json"]
    assert j == {
        "images": [{"name": "a.png", "data": "iVBORw=="}, {"name": 'b "1".png', "data": "R0lGOA=="}]
    }
    assert _body(ups, align=True)["json"]["pairs"][0]["b"]["name"] == 'b "1".png'
    assert [f[0] for f in _body(ups[:1] * 4, align=True)["files"]] == ["a", "b", "a", "b"]


def test_retry_after_seconds_and_dates():
    assert _retry_after("1") == 1.0
    assert _retry_after(" 2.5 ") == 2.5
    assert _retry_after(None) is None and _retry_after("soon") is None
    assert _retry_after("-3") == 0.0
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < _retry_after(later) <= 30
    assert _retry_after(email.utils.formatdate(0, usegmt=True)) == 0.0


@pytest.mark.parametrize(
    "status, error_type, cls",
    [
        (422, "invalid_input", InvalidInput),
        (429, "overloaded", Overloaded),
        (503, "queue_full", Unavailable),
        (503, "timeout", Unavailable),
        (503, None, Unavailable),
        (400, None, BadRequest),
        (500, "internal", ServerError),
        (502, None, ServerError),
    ],
)
def test_error_classes(status, error_type, cls):
    assert error_class(status, error_type) is cls
