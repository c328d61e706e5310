"""Scoring: every input form, names, parameters, the result fields against the server's own
JSON, chunking to the server's limits, and the DataFrame helper."""

from __future__ import annotations

import dataclasses
import io
import math

import httpx
import numpy as np
import pytest
from PIL import Image

from sslmem_client import (
    Client,
    ImageError,
    ImageErrors,
    ImageScore,
    InvalidInput,
    PayloadTooLarge,
    ScoreParams,
    ScoreResponse,
    score_frame,
)
from sslmem_client.frame import COLUMNS


def numbers(r: ImageScore):
    """A result without its name."""
    d = r.to_dict()
    del d["input"]
    return d


def test_paths_bytes_pil_numpy_and_files_give_identical_scores(server, images):
    with Client(server.url) as c:
        by_path = c.score(images, pairs=4, seed=3)
        by_bytes = c.score([p.read_bytes() for p in images], pairs=4, seed=3)
        by_pil = c.score([Image.open(p) for p in images], pairs=4, seed=3)
        by_array = c.score([np.asarray(Image.open(p)) for p in images], pairs=4, seed=3)
        by_array3 = c.score(
            [np.asarray(Image.open(p))[:, :, None] for p in images], pairs=4, seed=3
        )
        by_pathstr = c.score([str(p) for p in images], pairs=4, seed=3)
        files = [open(p, "rb") for p in images]
        try:
            by_file = c.score(files, pairs=4, seed=3)
        finally:
            for f in files:
                f.close()
        mixed = c.score(
            [
                images[0],
                images[1].read_bytes(),
                Image.open(images[2]),
                np.asarray(Image.open(images[3])),
            ],
            pairs=4,
            seed=3,
        )
    want = [numbers(r) for r in by_path.results]
    assert len(want) == len(images)
    assert len({w["score"] for w in want}) == len(images), "different images score differently"
    for resp in (by_bytes, by_pil, by_array, by_array3, by_pathstr, by_file):
        assert [numbers(r) for r in resp.results] == want
    assert [numbers(r) for r in mixed.results] == want[:4]
    # Names: a path's or a file's name, a PIL image's file name, else the position.
    assert [r.input for r in by_path.results] == [p.name for p in images]
    assert [r.input for r in by_file.results] == [p.name for p in images]
    assert [r.input for r in by_pil.results] == [p.name for p in images]
    assert [r.input for r in by_bytes.results] == [f"image#{i}" for i in range(len(images))]
    assert [r.input for r in mixed.results] == ["img0.png", "image#1", "img2.png", "image#3"]


def test_names_come_back_as_given(server, images):
    names = ["plain.png", "größe.png", 'with "quotes".png', "a/b c%20d.png"]
    with Client(server.url) as c:
        r = c.score(images[:4], names=names, pairs=2)
        assert [x.input for x in r.results] == names
        d = c.score({"first": images[0], "second": images[1].read_bytes()}, pairs=2)
        assert [x.input for x in d.results] == ["first", "second"]
        # The JSON body (used for the quoted name) scores exactly as multipart does.
        assert numbers(r.results[2]) == numbers(c.score([images[2]], pairs=2).results[0])
        assert c.score([images[3]], names=[names[3]], pairs=2).results[0].input == names[3]
        with pytest.raises(ValueError, match="2 names for 3 images"):
            c.score(images[:3], names=["a", "b"])


def test_parameters_reach_the_server(server, images):
    with Client(server.url) as c:
        default = c.score(images[:2])
        info = c.bundle()
        assert default.params == ScoreParams(
            pairs=info.defaults.pairs,
            seed=info.defaults.seed,
            mode="aug-vs-aug",
            distance="l2",
            normalize="l2",
        )
        r = c.score(
            images[:2], pairs=3, seed=7, mode="orig-vs-aug", distance="cosine", normalize="none"
        )
        assert r.params == ScoreParams(
            pairs=3, seed=7, mode="orig-vs-aug", distance="cosine", normalize="none"
        )
        assert all(x.pairs == 3 for x in r.results)
        again = c.score(
            images[:2], pairs=3, seed=7, mode="orig-vs-aug", distance="cosine", normalize="none"
        )
        assert again == r, "same image, parameters and seed: same numbers"
        other_seed = c.score(
            images[:2], pairs=3, seed=8, mode="orig-vs-aug", distance="cosine", normalize="none"
        )
        assert [x.score for x in other_seed.results] != [x.score for x in r.results]
        one = c.score(images[:1], pairs=1)
        assert one.results[0].stderr is None and one.results[0].ci95 is None


def test_dataclasses_match_the_servers_json(server, images):
    """The field names of the typed results are exactly the keys the server sends."""
    raw = httpx.post(
        f"{server.url}/v1/score?pairs=2",
        files=[("image", (images[0].name, images[0].read_bytes()))],
    ).json()
    assert set(raw) == {f.name for f in dataclasses.fields(ScoreResponse)}
    assert set(raw["params"]) == {f.name for f in dataclasses.fields(ScoreParams)}
    assert set(raw["results"][0]) == {f.name for f in dataclasses.fields(ImageScore)}
    with Client(server.url) as c:
        typed = c.score([images[0]], pairs=2)
    assert ScoreResponse.from_json(raw) == typed
    assert typed.results[0].to_dict() == raw["results"][0]
    assert typed.bundle == raw["bundle"]


def test_rgb_and_other_sizes_are_scored(server, odd_image):
    with Client(server.url) as c:
        r = c.score(
            [odd_image, np.asarray(Image.open(odd_image)), Image.open(odd_image).convert("RGBA")],
            pairs=2,
        )
    assert r.results[0].score == r.results[1].score
    assert all(math.isfinite(x.score) for x in r.results)


def test_bad_inputs_fail_before_sending(server, images):
    with Client(server.url) as c:
        with pytest.raises(TypeError, match="uint8"):
            c.score([np.zeros((28, 28), dtype=np.float32)])
        with pytest.raises(TypeError, match="shape"):
            c.score([np.zeros((28, 28, 2), dtype=np.uint8)])
        with pytest.raises(TypeError, match=r"list\(stack\)"):
            c.score(np.zeros((3, 28, 28), dtype=np.uint8))
        with pytest.raises(TypeError, match="cannot send int"):
            c.score([3])
        with pytest.raises(TypeError, match="binary mode"):
            with open(images[0], encoding="latin-1") as f:
                c.score([f])


def test_one_image_is_scored_as_a_list_of_one(server, images):
    with Client(server.url) as c:
        want = numbers(c.score([images[0]], pairs=3, seed=4).results[0])
        with open(images[0], "rb") as f:
            ones = [
                c.score(images[0], pairs=3, seed=4),
                c.score(str(images[0]), pairs=3, seed=4),
                c.score(images[0].read_bytes(), pairs=3, seed=4),
                c.score(Image.open(images[0]), pairs=3, seed=4),
                c.score(np.asarray(Image.open(images[0])), pairs=3, seed=4),
                c.score(f, pairs=3, seed=4),
            ]
        named = c.score(images[0].read_bytes(), names=["mine.png"], pairs=3, seed=4)
        frame = c.score_frame(images[0], pairs=3, seed=4)
    for r in ones:
        assert len(r.results) == 1
        assert numbers(r.results[0]) == want
    assert ones[0].results[0].input == images[0].name
    assert ones[2].results[0].input == "image#0"
    assert named.results[0].input == "mine.png"
    assert len(frame) == 1


def test_long_lists_are_split_to_the_servers_limit(server, tiny_server, images):
    with Client(server.url) as c:
        whole = c.score(images, pairs=3, seed=1)
        before = server.count("/v1/score", 200)
        two_by_two = c.score(images, pairs=3, seed=1, batch_size=2)
        assert server.count("/v1/score", 200) - before == 3
    assert two_by_two == whole
    with Client(tiny_server.url) as t:
        assert t.limits().max_images == 3
        before = tiny_server.count("/v1/score", 200)
        split = t.score(images, pairs=3, seed=1)  # 6 images, 3 per request
        assert tiny_server.count("/v1/score", 200) - before == 2
        # A batch size above the server's limit is capped by it.
        assert t.score(images[:5], pairs=3, seed=1, batch_size=10).results == whole.results[:5]
    assert split == whole, "split requests score exactly as one request"
    with Client(tiny_server.url, batch_size=1) as t:
        before = tiny_server.count("/v1/score", 200)
        assert t.score(images[:3], pairs=3, seed=1).results == whole.results[:3]
        assert tiny_server.count("/v1/score", 200) - before == 3


def test_score_frame_has_one_row_per_image(server, images):
    with Client(server.url) as c:
        resp = c.score(images, pairs=4, seed=2)
        df = c.score_frame(images, pairs=4, seed=2)
        df2 = score_frame(c, images, pairs=4, seed=2)
        single = c.score_frame(images[:2], pairs=1)
    assert list(df.columns) == COLUMNS
    assert len(df) == len(images)
    assert list(df["input"]) == [p.name for p in images]
    assert list(df["score"]) == [r.score for r in resp.results]
    assert list(df["ci95_low"]) == [r.ci95[0] for r in resp.results]
    assert list(df["ci95_high"]) == [r.ci95[1] for r in resp.results]
    assert df["pairs"].tolist() == [4] * len(images)
    assert df.attrs["seed"] == 2 and df.attrs["provider"] == resp.provider
    assert df.equals(df2) and df.equals(resp.to_frame())
    assert single["stderr"].isna().all() and single["ci95_low"].isna().all()


def test_png_from_pil_is_lossless(images):
    from sslmem_client.images import encode_image

    data, name = encode_image(np.asarray(Image.open(images[0])))
    assert name is None
    assert (np.asarray(Image.open(io.BytesIO(data))) == np.asarray(Image.open(images[0]))).all()


def test_requests_stay_under_the_servers_body_limit(server, tiny_server, tmp_path):
    rng = np.random.default_rng(11)
    noisy = []
    for i in range(3):  # about 14 kB each: one per 30,000-byte request
        p = tmp_path / f"noise{i}.png"
        Image.fromarray(rng.integers(0, 256, (120, 120), dtype=np.uint8)).save(p)
        noisy.append(p)
    assert all(12_000 < p.stat().st_size < 25_000 for p in noisy)
    with Client(server.url) as c:
        want = c.score(noisy, pairs=2)
    with Client(tiny_server.url) as t:
        before = tiny_server.count("/v1/score", 200)
        assert t.score(noisy, pairs=2) == want
        assert tiny_server.count("/v1/score", 200) - before == 3
        big = tmp_path / "big.png"
        Image.fromarray(rng.integers(0, 256, (200, 200), dtype=np.uint8)).save(big)
        with pytest.raises(PayloadTooLarge) as e:
            t.score([big])
    assert (e.value.status, e.value.error_type) == (413, "payload_too_large")


def test_bad_images_get_an_error_in_their_slot_and_the_rest_are_scored(tiny_server, images):
    """One bad image among many, over several requests: its own error entry, every other
    result kept (the client's default on_error="report")."""
    bad = {1: b"not an image", 5: b"", 7: b"\x89PNG\r\n\x1a\n broken"}
    items = list(images) + [images[0], images[1]]  # 8 images: three requests of at most 3
    for i, b in bad.items():
        items[i] = b
    with Client(tiny_server.url) as t:
        before = tiny_server.count("/v1/score", 200)
        r = t.score(items, pairs=3, seed=1)
        assert tiny_server.count("/v1/score", 200) - before == 3
        good = [x for i, x in enumerate(items) if i not in bad]
        want = t.score(good, pairs=3, seed=1)
        with pytest.raises(InvalidInput, match="image#1"):
            t.score(items, pairs=3, seed=1, on_error="fail")
    assert len(r.results) == len(items)
    assert [e.index for e in r.errors] == sorted(bad), "indexes over the whole list"
    for e in r.errors:
        assert isinstance(e, ImageError) and not e.ok
        assert r.results[e.index] is e and e.input == f"image#{e.index}"
        assert e.error_type == "undecodable" and "cannot decode image" in e.error
    assert [numbers(x) for x in r.scores] == [numbers(x) for x in want.results]
    assert all(x.ok for x in r.scores)
    with pytest.raises(ImageErrors) as e:
        r.raise_for_errors()
    assert e.value.response is r and len(e.value.errors) == 3
    assert "3 of 8 images have no score" in str(e.value) and "image#1" in str(e.value)
    assert want.raise_for_errors() is want
    df = r.to_frame()
    assert list(df.columns) == COLUMNS and len(df) == len(items)
    assert df["score"].isna().tolist() == [i in bad for i in range(len(items))]
    assert df["error_type"].iloc[1] == "undecodable" and "cannot decode" in df["error"].iloc[1]
    assert df["error"].isna().tolist() == [i not in bad for i in range(len(items))]


def test_sets_frame_names_the_sets_as_the_audit_does(server, images):
    with Client(server.url) as c:
        df = c.sets_frame(images[:3], images[3:5], pairs=3, seed=5)
        whole = c.score(images[:5], pairs=3, seed=5)
        with pytest.warns(UserWarning, match="no non-members"):
            alone = c.sets_frame(images[:2], shared=images[5:], pairs=3, seed=5)
    assert list(df.columns) == ["set", *COLUMNS]
    assert list(df["set"]) == ["candidate"] * 3 + ["extra"] * 2
    # The same images and seed: the same scores as one call, whatever the grouping.
    assert list(df["score"]) == [r.score for r in whole.results]
    assert df.attrs["seed"] == 5
    assert list(alone["set"]) == ["candidate", "candidate", "shared"]
    # As the audit does: one file in two sets is refused before anything is sent.
    with pytest.raises(ValueError, match="both the candidate and the extra set"):
        c.sets_frame(images[:2], [str(images[1])], pairs=3, seed=5)


def test_a_one_model_server_returns_one_model_results(one_model_server, server, images):
    from sslmem_client import OneModelScore
    from sslmem_client.frame import ONE_MODEL_COLUMNS

    with Client(one_model_server.url) as c:
        resp = c.score(images[4:], seed=0)
        raw = httpx.post(
            f"{one_model_server.url}/v1/score",
            files=[("image", (p.name, p.read_bytes())) for p in images[4:]],
        ).json()
    assert resp.estimator == "one-model" and raw["estimator"] == "one-model"
    assert resp.reference is not None and resp.reference.images == 4 and resp.reference.applied
    assert all(isinstance(r, OneModelScore) for r in resp.results)
    for got, want in zip(resp.results, raw["results"]):
        assert got.to_dict() == {**want, "align_f_ci95": want["align_f_ci95"]}
        assert 0.0 <= got.align_f_percentile <= 1.0 and got.knn_gap is not None
    # f's alignment is the pair's align_f (the same encoder and views).
    with Client(server.url) as c:
        pair = c.score(images[4:], pairs=4, seed=0)
    for one, two in zip(resp.results, pair.results):
        assert math.isclose(one.align_f, two.align_f, rel_tol=1e-6)
    df = resp.to_frame()
    assert list(df.columns) == ONE_MODEL_COLUMNS and df.attrs["estimator"] == "one-model"
    # Other settings than the reference's: not calibrated.
    with Client(one_model_server.url) as c:
        other = c.score(images[4:], pairs=3)
    assert not other.reference.applied
    assert all(r.align_f_percentile is None and r.knn_gap is None for r in other.results)
