"""The core needs httpx only: without numpy, Pillow and pandas it imports and scores, and
asking for what needs them says what to install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sslmem_client import Client

SRC = Path(__file__).resolve().parents[1] / "src"

SCRIPT = r"""
import sys
for m in ("numpy", "PIL", "pandas"):
    sys.modules[m] = None  # any import of them fails
import sslmem_client
from sslmem_client import Client
c = Client(sys.argv[1])
r = c.score([open(sys.argv[2], "rb").read(), sys.argv[2]], pairs=2)
print(repr(r.results[0].score), repr(r.results[1].score))
try:
    c.score_frame([sys.argv[2]])
except ImportError as e:
    print("frame:", e)
"""


def test_core_works_without_numpy_pillow_pandas(server, images):
    env = dict(os.environ, PYTHONPATH=str(SRC))
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, server.url, str(images[0])],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    with Client(server.url) as c:
        want = repr(c.score([images[0]], pairs=2).results[0].score)
    lines = out.stdout.splitlines()
    assert lines[0] == f"{want} {want}"
    assert "pip install 'sslmem-client[pandas]'" in lines[1]
