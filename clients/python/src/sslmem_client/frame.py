"""Scores as a pandas DataFrame (pandas is imported only here, when asked for)."""

from __future__ import annotations

from typing import Any

from .models import ScoreResponse

__all__ = ["COLUMNS", "to_frame", "score_frame"]

#: The DataFrame's columns, in order: the result fields, with ``ci95`` as two columns.
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
]


def to_frame(response: ScoreResponse):
    """One row per image, in the order scored. ``stderr`` and the interval are NaN for one
    pair. ``df.attrs`` holds the bundle, the provider and the parameters."""
    try:
        import pandas as pd
    except ImportError as e:
        raise ImportError("score_frame needs pandas: pip install 'sslmem-client[pandas]'") from e
    nan = float("nan")
    rows = [
        (
            r.input,
            r.align_f,
            r.align_g,
            r.score,
            r.score_ratio,
            nan if r.stderr is None else r.stderr,
            nan if r.ci95 is None else r.ci95[0],
            nan if r.ci95 is None else r.ci95[1],
            r.pairs,
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
