"""Errors: every failure the client reports is an :class:`SslmemError`.

The service answers errors as JSON ``{"error": "...", "error_type": "..."}``; the
exception carries that message, that ``error_type``, the HTTP status, the
``Retry-After`` the server asked for (429, 503) and the request id it logged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional

if TYPE_CHECKING:  # pragma: no cover
    from .models import ImageError, ScoreResponse

__all__ = [
    "SslmemError",
    "ConnectionFailed",
    "BadRequest",
    "Unauthorized",
    "NotFound",
    "MethodNotAllowed",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "InvalidInput",
    "Overloaded",
    "Unavailable",
    "ServerError",
    "ImageErrors",
]


class SslmemError(Exception):
    """Base class of every error the client raises.

    Attributes:
        message: the server's ``error`` text (or a description of the failure).
        error_type: the server's ``error_type`` (``invalid_input``, ``overloaded``,
            ``queue_full``, ...); ``None`` when the server gave none.
        status: the HTTP status; ``None`` when no response came back.
        retry_after: seconds the server asked to wait (``Retry-After``), if any.
        request_id: the ``x-request-id`` the server logged the request under.
        attempts: how many times the request was sent (retries included).
    """

    def __init__(
        self,
        message: str,
        *,
        error_type: Optional[str] = None,
        status: Optional[int] = None,
        retry_after: Optional[float] = None,
        request_id: Optional[str] = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type
        self.status = status
        self.retry_after = retry_after
        self.request_id = request_id
        self.attempts = attempts

    def __str__(self) -> str:
        head = f"{self.status} {self.error_type}" if self.status else (self.error_type or "error")
        tail = f" (after {self.attempts} attempts)" if self.attempts > 1 else ""
        return f"{head}: {self.message}{tail}"


class ConnectionFailed(SslmemError):
    """No HTTP response: connection refused or reset, DNS failure, client-side timeout."""


class BadRequest(SslmemError):
    """400 ``bad_request``: a malformed JSON or multipart body."""


class Unauthorized(SslmemError):
    """401 ``unauthorized``: the API key is missing or wrong."""


class NotFound(SslmemError):
    """404 ``not_found``: no such route (wrong base URL?)."""


class MethodNotAllowed(SslmemError):
    """405 ``method_not_allowed``."""


class PayloadTooLarge(SslmemError):
    """413 ``payload_too_large``: the body is over the server's ``--max-body-bytes``."""


class UnsupportedMediaType(SslmemError):
    """415 ``unsupported_media_type``."""


class InvalidInput(SslmemError):
    """422 ``invalid_input``: an image that cannot be decoded (the message names it), a bad
    parameter, too many images or pairs."""


class Overloaded(SslmemError):
    """429 ``overloaded``: more requests in flight than the server's ``--max-concurrent``."""


class Unavailable(SslmemError):
    """503: ``queue_full``, ``timeout``, ``draining``, ``not_ready`` or ``engine_stopped``."""


class ServerError(SslmemError):
    """500 and any other unexpected status."""


class ImageErrors(SslmemError):
    """Raised by :meth:`ScoreResponse.raise_for_errors` when some images have no score.

    Nothing is lost: ``response`` holds every result, scores and errors, in order.

    Attributes:
        response: the whole :class:`~sslmem_client.models.ScoreResponse`.
        errors: its :class:`~sslmem_client.models.ImageError` entries.
    """

    def __init__(self, response: "ScoreResponse") -> None:
        self.response = response
        self.errors: List["ImageError"] = response.errors
        first = self.errors[0]
        super().__init__(
            f"{len(self.errors)} of {len(response.results)} images have no score; the first: "
            f"{first.input} (#{first.index}): {first.error}",
            error_type=first.error_type,
        )


_BY_TYPE = {
    "bad_request": BadRequest,
    "unauthorized": Unauthorized,
    "not_found": NotFound,
    "method_not_allowed": MethodNotAllowed,
    "payload_too_large": PayloadTooLarge,
    "unsupported_media_type": UnsupportedMediaType,
    "invalid_input": InvalidInput,
    "overloaded": Overloaded,
}

_BY_STATUS = {
    400: BadRequest,
    401: Unauthorized,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: InvalidInput,
    429: Overloaded,
    503: Unavailable,
}


def error_class(status: int, error_type: Optional[str]) -> type:
    """The exception class for a status and the server's ``error_type``."""
    if status == 503:
        return Unavailable
    cls = _BY_TYPE.get(error_type or "")
    if cls is not None:
        return cls
    return _BY_STATUS.get(status, ServerError)
