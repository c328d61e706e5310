"""The sync :class:`Client` and the async :class:`AsyncClient` over httpx.

Both send images as ``multipart/form-data`` parts (JSON with base64 when an image's name
would not survive a multipart header) and parameters in the query string, retry
429 and 503 answers after the server's ``Retry-After`` (a bounded number of times), split
long image lists into requests the server accepts (``limits.max_images`` and
``limits.max_body_bytes`` from ``GET /v1/bundle``), and raise :class:`SslmemError`
subclasses.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import email.utils
import time
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import httpx

from . import frame
from .errors import ConnectionFailed, SslmemError, error_class
from .images import Images, Upload, encode_image, to_uploads
from .models import (
    AlignResponse,
    BundleInfo,
    EmbedResponse,
    ImageError,
    Limits,
    ScoreEntry,
    ScoreResponse,
)

__all__ = ["Client", "AsyncClient", "DEFAULT_URL"]

DEFAULT_URL = "http://127.0.0.1:8080"

# Room left in each request body for the multipart framing of a part (headers, boundary).
_PART_OVERHEAD = 256
_BODY_MARGIN = 4096

RetryHook = Callable[[SslmemError, float], None]


def _retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _error(resp: httpx.Response, attempts: int) -> SslmemError:
    message: Optional[str] = None
    error_type: Optional[str] = None
    try:
        body = resp.json()
        if isinstance(body, dict):
            message, error_type = body.get("error"), body.get("error_type")
    except ValueError:
        pass
    if not message:
        message = resp.text.strip() or resp.reason_phrase or f"HTTP {resp.status_code}"
    cls = error_class(resp.status_code, error_type)
    return cls(
        str(message),
        error_type=error_type,
        status=resp.status_code,
        retry_after=_retry_after(resp.headers.get("retry-after")),
        request_id=resp.headers.get("x-request-id"),
        attempts=attempts,
    )


def _json(resp: httpx.Response) -> Dict[str, Any]:
    try:
        body = resp.json()
    except ValueError as e:
        raise SslmemError(
            f"the server answered {resp.status_code} without JSON: {resp.text[:200]!r}",
            status=resp.status_code,
        ) from e
    if not isinstance(body, dict):
        raise SslmemError(
            f"unexpected JSON from the server: {body!r:.200}", status=resp.status_code
        )
    return body


def _query(**params: Any) -> Dict[str, str]:
    out = {}
    for k, v in params.items():
        if v is None:
            continue
        out[k] = str(v).lower() if isinstance(v, bool) else str(v)
    return out


def _plan(
    uploads: List[Upload], max_items: int, max_bytes: int, group: int = 1
) -> List[List[Upload]]:
    """Splits uploads into requests of at most ``max_items`` images and (as far as one image
    allows) ``max_bytes`` of body, never splitting a group (an align pair)."""
    budget = max(1, max_bytes - _BODY_MARGIN)
    b64 = _needs_json(uploads)
    chunks: List[List[Upload]] = []
    cur: List[Upload] = []
    cur_bytes = 0
    for i in range(0, len(uploads), group):
        g = uploads[i : i + group]
        size = sum(
            (-(-len(d) // 3) * 4 if b64 else len(d)) + len(n.encode()) + _PART_OVERHEAD
            for n, d in g
        )
        if cur and (len(cur) + len(g) > max_items or cur_bytes + size > budget):
            chunks.append(cur)
            cur, cur_bytes = [], 0
        cur.extend(g)
        cur_bytes += size
    if cur:
        chunks.append(cur)
    return chunks


# Characters a multipart file name does not carry intact (httpx escapes them as %22, %0D,
# %0A and the server reads names as sent); requests with such names go as JSON.
_UNSAFE_IN_MULTIPART = ('"', "\r", "\n")


def _needs_json(uploads: List[Upload]) -> bool:
    return any(c in name for name, _ in uploads for c in _UNSAFE_IN_MULTIPART)


def _body(uploads: List[Upload], align: bool) -> Dict[str, Any]:
    """httpx keyword arguments for the body: multipart parts (``image`` for score and embed,
    ``a``, ``b``, ... for align), or JSON with base64 when a name needs it."""
    if not _needs_json(uploads):
        fields = ("a", "b") if align else ("image",)
        return {
            "files": [
                (fields[i % len(fields)], (name, data, "application/octet-stream"))
                for i, (name, data) in enumerate(uploads)
            ]
        }
    items = [{"name": n, "data": base64.b64encode(d).decode("ascii")} for n, d in uploads]
    if align:
        return {
            "json": {"pairs": [{"a": items[i], "b": items[i + 1]} for i in range(0, len(items), 2)]}
        }
    return {"json": {"images": items}}


def _pair_uploads(
    pairs: Iterable[Tuple[Any, Any]], names: Optional[Sequence[Tuple[str, str]]]
) -> List[Upload]:
    items = list(pairs)
    if names is not None and len(names) != len(items):
        raise ValueError(f"{len(names)} name pairs for {len(items)} image pairs")
    out: List[Upload] = []
    for i, pair in enumerate(items):
        try:
            a, b = pair
        except (TypeError, ValueError):
            raise TypeError("align takes a list of (a, b) image pairs") from None
        for j, (obj, side) in enumerate(((a, "a"), (b, "b"))):
            data, natural = encode_image(obj)
            name = names[i][j] if names is not None else (natural or f"pair#{i}.{side}")
            out.append((str(name), data))
    return out


def _merge_score(parts: List[Dict[str, Any]]) -> ScoreResponse:
    first = ScoreResponse.from_json(parts[0])
    results: List[ScoreEntry] = []
    for p in parts:
        # The server numbers a request's images from 0: renumber them over the whole list.
        offset = len(results)
        for r in ScoreResponse.from_json(p).results:
            results.append(
                dataclasses.replace(r, index=r.index + offset) if isinstance(r, ImageError) else r
            )
    return dataclasses.replace(first, results=results)


def _merge_align(parts: List[Dict[str, Any]]) -> AlignResponse:
    first = AlignResponse.from_json(parts[0])
    results = list(first.results)
    for p in parts[1:]:
        results.extend(AlignResponse.from_json(p).results)
    return AlignResponse(
        bundle=first.bundle,
        provider=first.provider,
        distance=first.distance,
        normalize=first.normalize,
        results=results,
    )


def _merge_embed(parts: List[Dict[str, Any]]) -> EmbedResponse:
    first = EmbedResponse.from_json(parts[0])
    results = list(first.results)
    for p in parts[1:]:
        results.extend(EmbedResponse.from_json(p).results)
    return EmbedResponse(
        bundle=first.bundle, provider=first.provider, output=first.output, results=results
    )


class _Base:
    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: Optional[str] = None,
        timeout: Optional[float] = 120.0,
        max_retries: int = 3,
        max_retry_wait: float = 30.0,
        batch_size: Optional[int] = None,
        on_retry: Optional[RetryHook] = None,
        headers: Optional[Dict[str, str]] = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        if batch_size is not None and batch_size < 1:
            raise ValueError("batch_size must be positive")
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self.batch_size = batch_size
        self.on_retry = on_retry
        self._limits: Optional[Limits] = None
        h = {"user-agent": "sslmem-client/0.1"}
        if api_key:
            h["authorization"] = f"Bearer {api_key}"
        h.update(headers or {})
        self._client_args = dict(base_url=self.base_url, headers=h, timeout=timeout)

    def _wait_before_retry(self, err: SslmemError) -> Optional[float]:
        """Seconds to wait before sending again, or None to give up."""
        if err.status not in (429, 503) or err.attempts > self.max_retries:
            return None
        wait = err.retry_after
        if wait is None:  # no Retry-After: back off exponentially
            wait = 0.5 * 2 ** (err.attempts - 1)
        wait = min(wait, self.max_retry_wait)
        if self.on_retry is not None:
            self.on_retry(err, wait)
        return wait

    def _max_items(self, limits: Limits, batch_size: Optional[int], group: int) -> int:
        """Images per request: the call's ``batch_size`` (pairs for align), else the
        client's (images), never more than the server takes."""
        n = limits.max_images
        if batch_size is not None:
            if batch_size < 1:
                raise ValueError("batch_size must be positive")
            n = min(n, batch_size * group)
        elif self.batch_size is not None:
            n = min(n, self.batch_size)
        return max(group, n - n % group)

    def _url(self, path: str) -> str:
        return f"{self.base_url}{path}"


class Client(_Base):
    """Synchronous client for ``sslmem serve``.

    Args:
        base_url: the service, e.g. ``http://127.0.0.1:8080``.
        api_key: sent as ``Authorization: Bearer <key>`` (the server's ``--api-key``).
        timeout: seconds per HTTP request (httpx's timeout); ``None`` waits for ever.
        max_retries: how many times a request refused with 429 or 503 is sent again
            (so at most ``max_retries + 1`` attempts); 0 never retries.
        max_retry_wait: the longest wait between attempts, in seconds; the wait is the
            server's ``Retry-After``, else 0.5 s doubling.
        batch_size: most images per request (default and upper bound: the server's
            ``limits.max_images``); long lists are sent as several requests.
        on_retry: called as ``on_retry(error, wait_seconds)`` before each retry.
        headers: extra HTTP headers.
        transport: an ``httpx`` transport (for proxies, custom TLS, ...).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: Optional[str] = None,
        timeout: Optional[float] = 120.0,
        max_retries: int = 3,
        max_retry_wait: float = 30.0,
        batch_size: Optional[int] = None,
        on_retry: Optional[RetryHook] = None,
        headers: Optional[Dict[str, str]] = None,
        transport: Optional[httpx.BaseTransport] = None,
    ) -> None:
        super().__init__(
            base_url,
            api_key=api_key,
            timeout=timeout,
            max_retries=max_retries,
            max_retry_wait=max_retry_wait,
            batch_size=batch_size,
            on_retry=on_retry,
            headers=headers,
        )
        self._http = httpx.Client(transport=transport, **self._client_args)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        attempts = 1
        while True:
            try:
                resp = self._http.request(method, path, **kw)
            except httpx.TransportError as e:
                raise ConnectionFailed(
                    f"{method} {self._url(path)}: {e or type(e).__name__}", attempts=attempts
                ) from e
            if resp.status_code < 400:
                return resp
            err = _error(resp, attempts)
            wait = self._wait_before_retry(err)
            if wait is None:
                raise err
            time.sleep(wait)
            attempts += 1

    def limits(self) -> Limits:
        """The server's limits (asked once, then remembered)."""
        if self._limits is None:
            self._limits = self.bundle().limits
        return self._limits

    def _post_chunks(
        self,
        path: str,
        uploads: List[Upload],
        query: Dict[str, str],
        batch_size: Optional[int],
        align: bool = False,
    ) -> List[Dict[str, Any]]:
        if not uploads:
            # Let the server say what is wrong with an empty request (422 invalid_input).
            return [_json(self._request("POST", path, params=query, json={"pairs": []} if align else {"images": []}))]
        lim = self.limits()
        group = 2 if align else 1
        chunks = _plan(uploads, self._max_items(lim, batch_size, group), lim.max_body_bytes, group)
        return [_json(self._request("POST", path, params=query, **_body(c, align))) for c in chunks]

    def score(
        self,
        images: Images,
        pairs: Optional[int] = None,
        seed: Optional[int] = None,
        mode: Optional[str] = None,
        distance: Optional[str] = None,
        normalize: Optional[str] = None,
        *,
        names: Optional[Sequence[str]] = None,
        batch_size: Optional[int] = None,
        on_error: str = "report",
    ) -> ScoreResponse:
        """SSLMem scores of images: one image (a path, bytes, a binary file, a PIL image, a
        uint8 array), a list of them, or a dict of name -> image. ``pairs``, ``seed``,
        ``mode`` (``aug-vs-aug``, ``orig-vs-aug``), ``distance`` (``l2``, ``cosine``,
        ``l1``) and ``normalize`` (``l2``, ``none``) default to the server's. Results come in
        the order given, one per image.

        ``on_error``: ``"report"`` (default) gives an image the server cannot decode or score
        an :class:`ImageError` in its slot and scores the others, in every request of a long
        list; ``"fail"`` raises :class:`InvalidInput` instead, and the results of the whole
        call are lost. ``response.raise_for_errors()`` raises after the fact, keeping them."""
        q = _query(
            pairs=pairs,
            seed=seed,
            mode=mode,
            distance=distance,
            normalize=normalize,
            on_error=on_error,
        )
        return _merge_score(
            self._post_chunks("/v1/score", to_uploads(images, names), q, batch_size)
        )

    def score_frame(self, images: Images, *args: Any, **kw: Any):
        """:meth:`score` as a pandas DataFrame, one row per image (needs pandas)."""
        return self.score(images, *args, **kw).to_frame()

    def sets_frame(
        self,
        members: Images,
        non_members: Optional[Images] = None,
        *,
        shared: Optional[Images] = None,
        independent: Optional[Images] = None,
        **kw: Any,
    ):
        """Scores of the sets a membership audit compares, as one pandas DataFrame: a
        ``set`` column named as ``sslmem audit --members ... --non-members ...`` names them
        (``members``: images ``f`` was trained on and ``g`` was not, ``candidate``;
        ``non_members``: images neither saw, from the same distribution, ``extra``;
        optionally ``shared`` and ``independent``), then the columns of :meth:`score_frame`.
        The scores are those the audit gives for the same images and seed. ``kw`` goes to
        :meth:`score`. Warns without non-members. For the checks, the tests and the
        membership ROC with intervals, run the audit itself (docs/audit.md)."""
        return frame.sets_frame(
            self, members, non_members, shared=shared, independent=independent, **kw
        )

    def align(
        self,
        pairs_of_images: Iterable[Tuple[Any, Any]],
        distance: Optional[str] = None,
        normalize: Optional[str] = None,
        *,
        names: Optional[Sequence[Tuple[str, str]]] = None,
        batch_size: Optional[int] = None,
    ) -> AlignResponse:
        """Distances of (a, b) image pairs under f and g, no augmentation (images of the
        model's input size)."""
        q = _query(distance=distance, normalize=normalize)
        uploads = _pair_uploads(pairs_of_images, names)
        return _merge_align(self._post_chunks("/v1/align", uploads, q, batch_size, align=True))

    def embed(
        self,
        images: Images,
        side: str = "both",
        *,
        names: Optional[Sequence[str]] = None,
        batch_size: Optional[int] = None,
    ) -> EmbedResponse:
        """Representations of images under the f encoders, the g encoders, or both."""
        q = _query(side=side)
        return _merge_embed(
            self._post_chunks("/v1/embed", to_uploads(images, names), q, batch_size)
        )

    def bundle(self) -> BundleInfo:
        """The bundle, device, provider, limits and defaults (``GET /v1/bundle``)."""
        info = BundleInfo.from_json(_json(self._request("GET", "/v1/bundle")))
        self._limits = info.limits
        return info

    def _probe(self, path: str) -> bool:
        try:
            return self._http.get(path).status_code == 200
        except httpx.TransportError:
            return False

    def health(self) -> bool:
        """True when ``/healthz`` answers 200; False otherwise, also when nothing answers."""
        return self._probe("/healthz")

    def ready(self) -> bool:
        """True when ``/readyz`` answers 200 (warmed up, not draining); False otherwise."""
        return self._probe("/readyz")


class AsyncClient(_Base):
    """The asynchronous twin of :class:`Client` (same arguments, same methods, awaited).

    Use it as ``async with AsyncClient(url) as c: r = await c.score([...])``.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: Optional[str] = None,
        timeout: Optional[float] = 120.0,
        max_retries: int = 3,
        max_retry_wait: float = 30.0,
        batch_size: Optional[int] = None,
        on_retry: Optional[RetryHook] = None,
        headers: Optional[Dict[str, str]] = None,
        transport: Optional[httpx.AsyncBaseTransport] = None,
    ) -> None:
        super().__init__(
            base_url,
            api_key=api_key,
            timeout=timeout,
            max_retries=max_retries,
            max_retry_wait=max_retry_wait,
            batch_size=batch_size,
            on_retry=on_retry,
            headers=headers,
        )
        self._http = httpx.AsyncClient(transport=transport, **self._client_args)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        attempts = 1
        while True:
            try:
                resp = await self._http.request(method, path, **kw)
            except httpx.TransportError as e:
                raise ConnectionFailed(
                    f"{method} {self._url(path)}: {e or type(e).__name__}", attempts=attempts
                ) from e
            if resp.status_code < 400:
                return resp
            err = _error(resp, attempts)
            wait = self._wait_before_retry(err)
            if wait is None:
                raise err
            await asyncio.sleep(wait)
            attempts += 1

    async def limits(self) -> Limits:
        if self._limits is None:
            self._limits = (await self.bundle()).limits
        return self._limits

    async def _post_chunks(
        self,
        path: str,
        uploads: List[Upload],
        query: Dict[str, str],
        batch_size: Optional[int],
        align: bool = False,
    ) -> List[Dict[str, Any]]:
        if not uploads:
            return [_json(await self._request("POST", path, params=query, json={"pairs": []} if align else {"images": []}))]
        lim = await self.limits()
        group = 2 if align else 1
        chunks = _plan(uploads, self._max_items(lim, batch_size, group), lim.max_body_bytes, group)
        return [
            _json(await self._request("POST", path, params=query, **_body(c, align)))
            for c in chunks
        ]

    async def score(
        self,
        images: Images,
        pairs: Optional[int] = None,
        seed: Optional[int] = None,
        mode: Optional[str] = None,
        distance: Optional[str] = None,
        normalize: Optional[str] = None,
        *,
        names: Optional[Sequence[str]] = None,
        batch_size: Optional[int] = None,
        on_error: str = "report",
    ) -> ScoreResponse:
        q = _query(
            pairs=pairs,
            seed=seed,
            mode=mode,
            distance=distance,
            normalize=normalize,
            on_error=on_error,
        )
        return _merge_score(
            await self._post_chunks("/v1/score", to_uploads(images, names), q, batch_size)
        )

    async def score_frame(self, images: Images, *args: Any, **kw: Any):
        return (await self.score(images, *args, **kw)).to_frame()

    async def sets_frame(
        self,
        members: Images,
        non_members: Optional[Images] = None,
        *,
        shared: Optional[Images] = None,
        independent: Optional[Images] = None,
        **kw: Any,
    ):
        sets = frame.named_sets(members, non_members, shared, independent)
        return frame.sets_to_frame(
            [(name, await self.score(images, **kw)) for name, images in sets]
        )

    async def align(
        self,
        pairs_of_images: Iterable[Tuple[Any, Any]],
        distance: Optional[str] = None,
        normalize: Optional[str] = None,
        *,
        names: Optional[Sequence[Tuple[str, str]]] = None,
        batch_size: Optional[int] = None,
    ) -> AlignResponse:
        q = _query(distance=distance, normalize=normalize)
        uploads = _pair_uploads(pairs_of_images, names)
        return _merge_align(
            await self._post_chunks("/v1/align", uploads, q, batch_size, align=True)
        )

    async def embed(
        self,
        images: Images,
        side: str = "both",
        *,
        names: Optional[Sequence[str]] = None,
        batch_size: Optional[int] = None,
    ) -> EmbedResponse:
        q = _query(side=side)
        return _merge_embed(
            await self._post_chunks("/v1/embed", to_uploads(images, names), q, batch_size)
        )

    async def bundle(self) -> BundleInfo:
        info = BundleInfo.from_json(_json(await self._request("GET", "/v1/bundle")))
        self._limits = info.limits
        return info

    async def _probe(self, path: str) -> bool:
        try:
            return (await self._http.get(path)).status_code == 200
        except httpx.TransportError:
            return False

    async def health(self) -> bool:
        return await self._probe("/healthz")

    async def ready(self) -> bool:
        return await self._probe("/readyz")
