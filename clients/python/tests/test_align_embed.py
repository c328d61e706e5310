"""Align, embed, the bundle endpoint and the probes."""

from __future__ import annotations

import dataclasses

import httpx
import numpy as np
import pytest
from PIL import Image

from sslmem_client import (
    Alignment,
    AlignResponse,
    BundleInfo,
    Client,
    Embedding,
    EmbedResponse,
    InvalidInput,
    Limits,
)


def test_align_pairs(server, images):
    a, b, c_ = images[:3]
    with Client(server.url) as c:
        r = c.align([(a, a), (a, b), (b, c_)])
        assert isinstance(r, AlignResponse)
        assert [(x.a, x.b) for x in r.results] == [
            (a.name, a.name),
            (a.name, b.name),
            (b.name, c_.name),
        ]
        assert (r.results[0].d_f, r.results[0].d_g) == (0.0, 0.0), (
            "an image is at distance 0 from itself"
        )
        assert r.results[1].d_f > 0 and r.results[1].d_g > 0
        assert (r.distance, r.normalize) == ("l2", "l2")
        # Any input form, same numbers; names per pair.
        same = c.align(
            [(a.read_bytes(), np.asarray(Image.open(b))), (Image.open(b), str(c_))],
            names=[("x", "y"), ("u", "v")],
        )
        assert [(x.a, x.b) for x in same.results] == [("x", "y"), ("u", "v")]
        assert [(x.d_f, x.d_g) for x in same.results] == [(x.d_f, x.d_g) for x in r.results[1:]]
        cos = c.align([(a, b)], distance="cosine", normalize="none")
        assert cos.distance == "cosine" and cos.normalize == "none"
        assert cos.results[0].d_f != r.results[1].d_f
        # Pairs are never split across requests.
        before = server.count("/v1/align", 200)
        split = c.align([(a, a), (a, b), (b, c_)], batch_size=2)
        assert server.count("/v1/align", 200) - before == 2
        assert split == r


def test_align_needs_the_models_size(server, images, odd_image):
    with Client(server.url) as c:
        with pytest.raises(InvalidInput) as e:
            c.align([(images[0], odd_image)])
    assert "does not resize" in e.value.message and e.value.error_type == "invalid_input"
    with pytest.raises(TypeError, match=r"\(a, b\)"):
        Client(server.url).align([images[0]])


def test_align_fields_match_the_servers_json(server, images):
    raw = httpx.post(
        f"{server.url}/v1/align",
        files=[("a", ("p.png", images[0].read_bytes())), ("b", ("q.png", images[1].read_bytes()))],
    ).json()
    assert set(raw) == {f.name for f in dataclasses.fields(AlignResponse)}
    assert set(raw["results"][0]) == {f.name for f in dataclasses.fields(Alignment)}
    with Client(server.url) as c:
        assert c.align(
            [(images[0], images[1])], names=[("p.png", "q.png")]
        ) == AlignResponse.from_json(raw)


def test_embed_sides(server, images):
    with Client(server.url) as c:
        info = c.bundle()
        both = c.embed(images[:3])
        f = c.embed(images[:3], side="f")
        g = c.embed([Image.open(p) for p in images[:3]], side="g")
    nf, ng = info.encoders["f"], info.encoders["g"]
    assert both.output == info.manifest["representation"]["output"]
    assert [r.input for r in both.results] == [p.name for p in images[:3]]
    arr_f, arr_g = both.array("f"), both.array("g")
    assert arr_f.shape[:2] == (3, nf) and arr_g.shape[:2] == (3, ng) and arr_f.shape[2] > 0
    assert all(r.g is None for r in f.results) and all(r.f is None for r in g.results)
    assert np.array_equal(f.array("f"), arr_f) and np.array_equal(g.array("g"), arr_g)
    with pytest.raises(ValueError, match="not asked for"):
        f.array("g")
    raw = httpx.post(
        f"{server.url}/v1/embed", files=[("image", (images[0].name, images[0].read_bytes()))]
    ).json()
    assert set(raw) == {f.name for f in dataclasses.fields(EmbedResponse)}
    assert set(raw["results"][0]) == {f.name for f in dataclasses.fields(Embedding)}
    assert EmbedResponse.from_json(raw).results[0] == both.results[0]


def test_embed_rejects_an_unknown_side(server, images):
    with Client(server.url) as c, pytest.raises(InvalidInput, match="side"):
        c.embed(images[:1], side="h")


def test_bundle_health_and_ready(server):
    raw = httpx.get(f"{server.url}/v1/bundle").json()
    assert set(raw) == {f.name for f in dataclasses.fields(BundleInfo)}
    assert set(raw["limits"]) == {f.name for f in dataclasses.fields(Limits)}
    with Client(server.url) as c:
        info = c.bundle()
        assert info == BundleInfo.from_json(raw)
        sides = {k: len(info.manifest[k]) for k in ("f", "g")}
        assert info.provider == "cpu" and info.encoders == sides and sides["f"] >= 1
        assert info.manifest["format"] == "sslmem-bundle/1"
        assert info.limits.max_images == 64 and info.defaults.pairs == 10
        assert c.health() is True and c.ready() is True
    with Client("http://127.0.0.1:9") as down:  # nothing listens on the discard port
        assert down.health() is False and down.ready() is False
