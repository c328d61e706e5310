"""Scores as a pandas DataFrame (pandas is imported only here, when asked for)."""

from __future__ import annotations

import os
import warnings
from typing import Any, List, Optional, Sequence, Tuple

# No import of .models: models imports this module (``ScoreResponse.to_frame``), and
# results say themselves whether they have a score (``ok``).

__all__ = [
    "COLUMNS",
    "ONE_MODEL_COLUMNS",
    "SET_NAMES",
    "to_frame",
    "score_frame",
    "sets_to_frame",
]

#: The sets a user names, as ``sslmem audit --members ... --non-members ...`` names them:
#: (this client's argument, the audit's set), in the audit's order.
SET_NAMES = (
    ("members", "candidate"),
    ("shared", "shared"),
    ("independent", "independent"),
    ("non_members", "extra"),
)

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


#: The columns of a one-model response's DataFrame (``estimator`` is ``"one-model"``).
ONE_MODEL_COLUMNS = [
    "input",
    "align_f",
    "align_f_stderr",
    "align_f_ci95_low",
    "align_f_ci95_high",
    "align_f_percentile",
    "knn_gap",
    "pairs",
    "error_type",
    "error",
]


def _nan(v: Optional[float]) -> float:
    return float("nan") if v is None else v


def _one_model_rows(response: Any) -> List[Tuple[Any, ...]]:
    nan = float("nan")
    return [
        (r.input, nan, nan, nan, nan, nan, nan, nan, r.error_type, r.error)
        if not r.ok
        else (
            r.input,
            r.align_f,
            _nan(r.align_f_stderr),
            nan if r.align_f_ci95 is None else r.align_f_ci95[0],
            nan if r.align_f_ci95 is None else r.align_f_ci95[1],
            _nan(r.align_f_percentile),
            _nan(r.knn_gap),
            r.pairs,
            None,
            None,
        )
        for r in response.results
    ]


def _pandas():
    try:
        import pandas as pd
    except ImportError as e:
        raise ImportError("score_frame needs pandas: pip install 'sslmem-client[pandas]'") from e
    return pd


def to_frame(response: Any):
    """One row per image of a :class:`~sslmem_client.models.ScoreResponse`, in the order
    scored. ``stderr`` and the interval are NaN for one pair. An image without a score
    (:class:`~sslmem_client.models.ImageError`, whose ``ok`` is False) has NaN numbers and its
    ``error_type`` and ``error``. ``df.attrs`` holds the bundle, the provider and the
    parameters. A one-model response (``estimator`` ``"one-model"``) has the columns
    :data:`ONE_MODEL_COLUMNS` instead."""
    pd = _pandas()
    if getattr(response, "estimator", "sslmem") == "one-model":
        df = pd.DataFrame.from_records(_one_model_rows(response), columns=ONE_MODEL_COLUMNS)
        return _with_attrs(df, response)
    nan = float("nan")
    rows = [
        (r.input, nan, nan, nan, nan, nan, nan, nan, nan, r.error_type, r.error)
        if not r.ok
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
    return _with_attrs(df, response)


def _with_attrs(df: Any, response: Any):
    """``df`` with the response's bundle, provider, estimator and parameters in ``attrs``."""
    df.attrs.update(
        estimator=getattr(response, "estimator", "sslmem"),
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


def named_sets(
    members: Any,
    non_members: Any = None,
    shared: Any = None,
    independent: Any = None,
) -> List[Tuple[str, Any]]:
    """The sets given, as (the audit's set name, images), in the audit's order. Warns when
    there are no non-members: then nothing says whether a score means memorization."""
    given = {"members": members, "shared": shared, "independent": independent,
             "non_members": non_members}
    if non_members is None:
        warnings.warn(
            "no non-members: without images neither encoder saw, from the same distribution, "
            "members' scores cannot be read as memorization (sslmem audit --members ... "
            "--non-members ... gives the checks and the membership ROC)",
            UserWarning,
            stacklevel=3,
        )
    sets = [(name, given[arg]) for arg, name in SET_NAMES if given[arg] is not None]
    # As `sslmem audit` does: a file named in two sets makes the comparison meaningless.
    seen = {}
    for name, images in sets:
        for path in _paths(images):
            other = seen.setdefault(path, name)
            if other != name:
                raise ValueError(
                    f"{path} is named in both the {other} and the {name} set; an image "
                    "belongs to one set"
                )
    return sets


def _paths(images: Any) -> List[str]:
    """The real paths of the files among ``images`` (one image, a list or a dict of them)."""
    if isinstance(images, dict):
        images = list(images.values())
    elif isinstance(images, (str, os.PathLike)) or not isinstance(images, (list, tuple)):
        images = [images]
    return [os.path.realpath(i) for i in images if isinstance(i, (str, os.PathLike))]


def sets_to_frame(responses: Sequence[Tuple[str, Any]]):
    """One frame of several sets' responses: a ``set`` column first (``candidate``,
    ``shared``, ``independent``, ``extra``), then :data:`COLUMNS`; ``df.attrs`` as
    :func:`to_frame` gives them, from the first response."""
    pd = _pandas()
    frames = []
    for name, response in responses:
        df = to_frame(response)
        df.insert(0, "set", name)
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    out.attrs = dict(frames[0].attrs) if frames else {}
    return out


def sets_frame(
    client: Any,
    members: Any,
    non_members: Optional[Any] = None,
    *,
    shared: Optional[Any] = None,
    independent: Optional[Any] = None,
    **kw: Any,
):
    """``client.sets_frame(...)`` for a sync client: see :meth:`Client.sets_frame`."""
    sets = named_sets(members, non_members, shared, independent)
    return sets_to_frame([(name, client.score(images, **kw)) for name, images in sets])
