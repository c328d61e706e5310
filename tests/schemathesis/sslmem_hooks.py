"""Schemathesis hooks for tests/openapi.rs: real images where the API document says "image".

A schema cannot say "bytes that decode as an image of the model's size", so without these the
generated uploads (random bytes, schemathesis' 1x1 samples) would be rejected with 422 and every
"valid request rejected" check would fail for a reason that is no bug. The strategies draw 28x28
grayscale PNGs with random pixels: the input size of the test bundles, which /v1/align needs.
"""

import base64
import struct
import zlib

import schemathesis
from hypothesis import strategies as st

SIZE = 28


def png(pixels: bytes) -> bytes:
    """An 8-bit grayscale SIZE x SIZE PNG of `pixels` (row-major)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + pixels[y * SIZE : (y + 1) * SIZE] for y in range(SIZE))
    header = struct.pack(">IIBBBBB", SIZE, SIZE, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


images = st.binary(min_size=SIZE * SIZE, max_size=SIZE * SIZE).map(png)

# Multipart file parts: the document gives them `encoding.contentType: image/*`.
schemathesis.openapi.media_type("image/png", images)
# Base64 images in JSON bodies: the document gives them `format: byte`.
schemathesis.openapi.format("byte", images.map(lambda b: base64.b64encode(b).decode()))
