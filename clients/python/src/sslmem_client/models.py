"""Typed results: dataclasses with the field names of the service's JSON.

Each has ``from_json`` (fields the client does not know yet are ignored, so a newer server
still parses) and, for results, ``to_dict``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

__all__ = [
    "ImageScore",
    "OneModelScore",
    "ReferenceInfo",
    "ImageError",
    "ScoreEntry",
    "ScoreParams",
    "ScoreResponse",
    "Alignment",
    "AlignResponse",
    "Embedding",
    "EmbedResponse",
    "Limits",
    "Defaults",
    "BundleInfo",
]


def _opt_float(v: Any) -> Optional[float]:
    return None if v is None else float(v)


@dataclass(frozen=True)
class ImageScore:
    """One image's SSLMem score (fields as in ``docs/scoring.md``).

    ``score`` = ``align_g`` - ``align_f``; ``stderr`` and ``ci95`` are ``None`` for one pair.
    """

    input: str
    align_f: float
    align_g: float
    score: float
    score_ratio: float
    stderr: Optional[float]
    ci95: Optional[Tuple[float, float]]
    pairs: int

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "ImageScore":
        ci = d.get("ci95")
        return cls(
            input=d["input"],
            align_f=float(d["align_f"]),
            align_g=float(d["align_g"]),
            score=float(d["score"]),
            score_ratio=float(d["score_ratio"]),
            stderr=_opt_float(d.get("stderr")),
            ci95=None if ci is None else (float(ci[0]), float(ci[1])),
            pairs=int(d["pairs"]),
        )

    #: Always True: this image has a score (an :class:`ImageError` has ``ok`` False).
    ok = True

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["ci95"] = None if self.ci95 is None else list(self.ci95)
        return d


@dataclass(frozen=True)
class OneModelScore:
    """One image's one-model result, from a bundle with ``f`` only (no SSLMem score; fields
    as in ``docs/science.md#one-model-scores``).

    ``align_f`` is the mean distance between paired augmented views under ``f`` (lower is
    tighter); ``align_f_percentile`` (low: member-like) and ``knn_gap`` (high: member-like)
    are calibrated on the server's reference population, ``None`` without one or when the
    request's settings are not the reference's. ``align_f_stderr`` and ``align_f_ci95`` are
    ``None`` for one pair.
    """

    input: str
    align_f: float
    align_f_stderr: Optional[float]
    align_f_ci95: Optional[Tuple[float, float]]
    align_f_percentile: Optional[float]
    knn_gap: Optional[float]
    pairs: int

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "OneModelScore":
        ci = d.get("align_f_ci95")
        return cls(
            input=d["input"],
            align_f=float(d["align_f"]),
            align_f_stderr=_opt_float(d.get("align_f_stderr")),
            align_f_ci95=None if ci is None else (float(ci[0]), float(ci[1])),
            align_f_percentile=_opt_float(d.get("align_f_percentile")),
            knn_gap=_opt_float(d.get("knn_gap")),
            pairs=int(d["pairs"]),
        )

    #: Always True: this image has a result.
    ok = True

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["align_f_ci95"] = None if self.align_f_ci95 is None else list(self.align_f_ci95)
        return d


@dataclass(frozen=True)
class ReferenceInfo:
    """A one-model server's reference population: its size, the neighbours of ``knn_gap``,
    and whether this request's results were calibrated on it."""

    images: int
    knn: int
    applied: bool

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "ReferenceInfo":
        return cls(images=int(d["images"]), knn=int(d["knn"]), applied=bool(d["applied"]))


@dataclass(frozen=True)
class ImageError:
    """An image that has no score: the server could not decode or score it
    (``on_error="report"``, the client's default). It sits in the image's slot of
    ``results``.

    ``index`` is the image's position in the list given to ``score`` (from 0);
    ``error_type`` is ``undecodable``, ``empty``, ``too_large`` or ``not_finite``;
    ``error`` is the server's message.
    """

    index: int
    input: str
    error: str
    error_type: str

    #: Always False: this image has no score.
    ok = False

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "ImageError":
        return cls(
            index=int(d["index"]), input=d["input"], error=d["error"], error_type=d["error_type"]
        )

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


#: One entry of :attr:`ScoreResponse.results`.
ScoreEntry = Union[ImageScore, OneModelScore, ImageError]


def _entry(d: Dict[str, Any]) -> ScoreEntry:
    # The server's entries have ``error`` (a failure), ``score`` (SSLMem) or neither (a
    # one-model result).
    if "error" in d:
        return ImageError.from_json(d)
    return ImageScore.from_json(d) if "score" in d else OneModelScore.from_json(d)


@dataclass(frozen=True)
class ScoreParams:
    """The parameters the server scored with (its defaults fill what the request left out)."""

    pairs: int
    seed: int
    mode: str
    distance: str
    normalize: str

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "ScoreParams":
        return cls(
            pairs=int(d["pairs"]),
            seed=int(d["seed"]),
            mode=d["mode"],
            distance=d["distance"],
            normalize=d["normalize"],
        )


@dataclass(frozen=True)
class ScoreResponse:
    """``POST /v1/score``: the bundle's name, the execution provider, the parameters and one
    entry per image, in the order given: an :class:`ImageScore` (an :class:`OneModelScore`
    when ``estimator`` is ``"one-model"``: the bundle holds ``f`` only), or an
    :class:`ImageError` for an image the server could not decode or score (``entry.ok``
    tells them apart). ``reference`` describes a one-model server's reference population."""

    bundle: Optional[str]
    provider: str
    params: ScoreParams
    results: List[ScoreEntry] = field(default_factory=list)
    estimator: str = "sslmem"
    reference: Optional[ReferenceInfo] = None

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "ScoreResponse":
        ref = d.get("reference")
        return cls(
            bundle=d.get("bundle"),
            provider=d["provider"],
            params=ScoreParams.from_json(d["params"]),
            results=[_entry(r) for r in d["results"]],
            estimator=d.get("estimator", "sslmem"),
            reference=None if ref is None else ReferenceInfo.from_json(ref),
        )

    @property
    def scores(self) -> List[Union[ImageScore, OneModelScore]]:
        """The images that have a result, in order (``results`` without the errors)."""
        return [r for r in self.results if r.ok]

    @property
    def errors(self) -> List[ImageError]:
        """The images that have no score, in order; empty when every image was scored."""
        return [r for r in self.results if isinstance(r, ImageError)]

    def raise_for_errors(self) -> "ScoreResponse":
        """Raises :class:`~sslmem_client.errors.ImageErrors` when any image has no score;
        returns the response otherwise (for ``client.score(...).raise_for_errors()``)."""
        if self.errors:
            from .errors import ImageErrors

            raise ImageErrors(self)
        return self

    def to_frame(self):  # -> pandas.DataFrame
        """One row per image (needs pandas): see :func:`sslmem_client.frame.score_frame`."""
        from .frame import to_frame

        return to_frame(self)


@dataclass(frozen=True)
class Alignment:
    """Distance between images ``a`` and ``b`` under the ``f`` and the ``g`` encoders."""

    a: str
    b: str
    d_f: float
    d_g: float

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "Alignment":
        return cls(a=d["a"], b=d["b"], d_f=float(d["d_f"]), d_g=float(d["d_g"]))

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AlignResponse:
    """``POST /v1/align``: one :class:`Alignment` per pair, in the order given."""

    bundle: Optional[str]
    provider: str
    distance: str
    normalize: str
    results: List[Alignment] = field(default_factory=list)

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "AlignResponse":
        return cls(
            bundle=d.get("bundle"),
            provider=d["provider"],
            distance=d["distance"],
            normalize=d["normalize"],
            results=[Alignment.from_json(r) for r in d["results"]],
        )


@dataclass(frozen=True)
class Embedding:
    """One image's representations: one vector per encoder of each side asked for
    (``f``/``g`` is ``None`` for the side not asked for)."""

    input: str
    f: Optional[List[List[float]]]
    g: Optional[List[List[float]]]

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "Embedding":
        return cls(input=d["input"], f=d.get("f"), g=d.get("g"))

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EmbedResponse:
    """``POST /v1/embed``: ``output`` names the model output the vectors come from."""

    bundle: Optional[str]
    provider: str
    output: str
    results: List[Embedding] = field(default_factory=list)

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "EmbedResponse":
        return cls(
            bundle=d.get("bundle"),
            provider=d["provider"],
            output=d["output"],
            results=[Embedding.from_json(r) for r in d["results"]],
        )

    def array(self, side: str):  # -> numpy.ndarray
        """The ``side`` (``"f"`` or ``"g"``) vectors as a float32 array of shape
        (images, encoders, dimension); needs numpy."""
        import numpy as np

        rows = [getattr(r, side) for r in self.results]
        if any(r is None for r in rows):
            raise ValueError(f"side {side!r} was not asked for")
        return np.asarray(rows, dtype=np.float32)


@dataclass(frozen=True)
class Limits:
    """The server's per-request limits (its command-line flags)."""

    max_images: int
    max_pairs: int
    max_pixels: int
    max_body_bytes: int
    max_concurrent: int
    request_timeout_seconds: float

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "Limits":
        return cls(
            max_images=int(d["max_images"]),
            max_pairs=int(d["max_pairs"]),
            max_pixels=int(d["max_pixels"]),
            max_body_bytes=int(d["max_body_bytes"]),
            max_concurrent=int(d["max_concurrent"]),
            request_timeout_seconds=float(d["request_timeout_seconds"]),
        )


@dataclass(frozen=True)
class Defaults:
    """The server's defaults for requests that leave ``pairs`` or ``seed`` out."""

    pairs: int
    seed: int

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "Defaults":
        return cls(pairs=int(d["pairs"]), seed=int(d["seed"]))


@dataclass(frozen=True)
class BundleInfo:
    """``GET /v1/bundle``: the bundle's folder name (not its path on the server), the SHA-256
    of its ``sslmem.json`` (which lists every file's SHA-256; ``None`` for a lone model
    file), its manifest (``sslmem.json`` as a dict), the device asked for, the execution provider in use, the number of encoders
    per side, the limits and the defaults."""

    bundle: str
    sha256: Optional[str]
    manifest: Dict[str, Any]
    device: str
    provider: str
    encoders: Dict[str, int]
    limits: Limits
    defaults: Defaults

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "BundleInfo":
        return cls(
            bundle=d["bundle"],
            sha256=d.get("sha256"),
            manifest=d["manifest"],
            device=d["device"],
            provider=d["provider"],
            encoders={k: int(v) for k, v in d["encoders"].items()},
            limits=Limits.from_json(d["limits"]),
            defaults=Defaults.from_json(d["defaults"]),
        )

    @property
    def name(self) -> Optional[str]:
        """The bundle's name from its manifest (as in score responses' ``bundle``)."""
        return self.manifest.get("name")
