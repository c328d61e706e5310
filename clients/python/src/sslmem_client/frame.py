"""Scores as a pandas DataFrame (pandas is imported only here, when asked for)."""

from __future__ import annotations

from typing import Any

from .models import ImageError, ScoreResponse

__all__ = ["COLUMNS", "to_frame", "score_frame"]

#: The DataFrame's columns, in order: the result fields, with ``ci95`` as two columns, then
#: ``error_type`` and ``error`` (missing, NaN, for an image with a score).
COLUMNS = [
    "input",
    "align_f",
    "align_g",
    "score",
    "score_ratio",
    "stderr",
    "ci95_low",
    "ci95_high",
    "pairs",
    "error_type",
    "error",
]


def to_frame(response: ScoreResponse):
    """One row per image, in the order scored. ``stderr`` and the interval are NaN for one
    pair. An image without a score (:class:`ImageError`) has NaN numbers and its
    ``error_type`` and ``error``. ``df.attrs`` holds the bundle, the provider and the
    parameters."""
    try:
        import pandas as pd
    except ImportError as e:
        raise ImportError("score_frame needs pandas: pip install 'sslmem-client[pandas]'") from e
    nan = float("nan")
    rows = [
        (r.input, nan, nan, nan, nan, nan, nan, nan, nan, r.error_type, r.error)
        if isinstance(r, ImageError)
        else (
            r.input,
            r.align_f,
            r.align_g,
            r.score,
            r.score_ratio,
            nan if r.stderr is None else r.stderr,
            nan if r.ci95 is None else r.ci95[0],
            nan if r.ci95 is None else r.ci95[1],
            r.pairs,
            None,
            None,
        )
        for r in response.results
    ]
    df = pd.DataFrame.from_records(rows, columns=COLUMNS)
    df.attrs.update(
        bundle=response.bundle,
        provider=response.provider,
        pairs=response.params.pairs,
        seed=response.params.seed,
        mode=response.params.mode,
        distance=response.params.distance,
        normalize=response.params.normalize,
    )
    return df


def score_frame(client: Any, images: Any, *args: Any, **kw: Any):
    """``client.score(images, ...)`` as a DataFrame, one row per image (a sync client)."""
    return to_frame(client.score(images, *args, **kw))
