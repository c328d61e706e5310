"""Turning what a caller holds into (name, bytes) uploads.

Accepted: a file path (``str`` or ``os.PathLike``), encoded bytes (``bytes``,
``bytearray``, ``memoryview``), an open binary file, a ``PIL.Image.Image``, or a numpy
``uint8`` array of shape (H, W) or (H, W, C) with C in 1, 3, 4. PIL images and arrays are
sent as lossless PNG of their pixels (Pillow needed); everything else is sent as is and
decoded by the server. numpy and Pillow are looked up only when such an object is given, so
the core works without them.
"""

from __future__ import annotations

import io
import os
import sys
from typing import Any, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

__all__ = ["Upload", "to_uploads", "encode_image"]

Upload = Tuple[str, bytes]

# Modes Pillow writes to PNG as they are; others are converted first.
_PNG_MODES = {"1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"}


def _is_pil(obj: Any) -> bool:
    mod = sys.modules.get("PIL.Image")
    return mod is not None and isinstance(obj, mod.Image)


def _is_ndarray(obj: Any) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(obj, np.ndarray)


def _need_pillow(what: str):
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - exercised by a subprocess test
        raise ImportError(
            f"sending {what} needs Pillow: pip install 'sslmem-client[images]'"
        ) from e
    return Image


def _png(img: Any) -> bytes:
    if img.mode not in _PNG_MODES:
        img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _array_png(arr: Any) -> bytes:
    import numpy as np

    if arr.dtype != np.uint8:
        raise TypeError(
            f"numpy images must be uint8 (got {arr.dtype}); scale and convert them first, "
            "e.g. (x * 255).round().astype(np.uint8)"
        )
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        stack = " (for a stack of N images, pass list(stack))" if arr.ndim in (3, 4) else ""
        raise TypeError(
            "numpy images must have shape (H, W) or (H, W, C) with C in 1, 3, 4 "
            f"(got {arr.shape}){stack}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"empty image of shape {arr.shape}")
    Image = _need_pillow("numpy arrays")
    # uint8 (H, W) -> L, (H, W, 3) -> RGB, (H, W, 4) -> RGBA
    return _png(Image.fromarray(np.ascontiguousarray(arr)))


def encode_image(obj: Any) -> Tuple[bytes, Optional[str]]:
    """The bytes to send for one image, and its natural name (a file's name), if any."""
    if isinstance(obj, (str, os.PathLike)):
        path = os.fspath(obj)
        with open(path, "rb") as f:
            return f.read(), os.path.basename(path)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj), None
    if _is_pil(obj):
        _need_pillow("PIL images")
        fname = getattr(obj, "filename", None)
        return _png(obj), (os.path.basename(fname) if fname else None)
    if _is_ndarray(obj):
        return _array_png(obj), None
    read = getattr(obj, "read", None)
    if callable(read):
        data = read()
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError("open image files in binary mode ('rb')")
        fname = getattr(obj, "name", None)
        return bytes(data), (os.path.basename(fname) if isinstance(fname, str) else None)
    raise TypeError(
        f"cannot send {type(obj).__name__} as an image: give a path, bytes, a binary file, "
        "a PIL image or a uint8 numpy array"
    )


ImageLike = Any
Images = Union[Mapping[str, ImageLike], Iterable[ImageLike]]


def _is_single(images: Any) -> bool:
    # One image rather than a collection of them: a path, bytes, a PIL image, an array, or an
    # open file (iterable, but over lines, not images).
    return (
        isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview))
        or _is_pil(images)
        or _is_ndarray(images)
        or callable(getattr(images, "read", None))
    )


def to_uploads(images: Images, names: Optional[Sequence[str]] = None) -> List[Upload]:
    """(name, bytes) for each image: one image (anything a list may hold), a list (any
    iterable) of them, or a mapping of name -> image. Names: ``names`` if given, else the
    keys of a mapping, else the file's name, else ``image#<position>``."""
    if _is_single(images):
        images = [images]
    if isinstance(images, Mapping):
        if names is not None:
            raise TypeError("give names either as the keys of a dict or as names=, not both")
        names = [str(k) for k in images.keys()]
        items = list(images.values())
    else:
        items = list(images)
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != len(items):
            raise ValueError(f"{len(names)} names for {len(items)} images")
    out = []
    for i, obj in enumerate(items):
        data, natural = encode_image(obj)
        name = names[i] if names is not None else (natural or f"image#{i}")
        out.append((name, data))
    return out
