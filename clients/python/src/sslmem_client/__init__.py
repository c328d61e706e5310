"""Python client for the sslmem scoring service (``sslmem serve``).

    >>> from sslmem_client import Client
    >>> client = Client("http://127.0.0.1:8080")
    >>> client.score("shirt.png").results[0].score   # doctest: +SKIP

See ``docs/python.md`` in the sslmem repository.
"""

from .client import DEFAULT_URL, AsyncClient, Client
from .errors import (
    BadRequest,
    ConnectionFailed,
    ImageErrors,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    ServerError,
    SslmemError,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)
from . import errors
from .frame import score_frame
from .models import (
    Alignment,
    AlignResponse,
    BundleInfo,
    Defaults,
    Embedding,
    EmbedResponse,
    ImageError,
    ImageScore,
    OneModelScore,
    ReferenceInfo,
    Limits,
    ScoreEntry,
    ScoreParams,
    ScoreResponse,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_URL",
    "Client",
    "AsyncClient",
    "score_frame",
    *errors.__all__,
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
