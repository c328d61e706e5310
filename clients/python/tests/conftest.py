"""Real `sslmem serve` processes on loopback for the client's tests (no mocks).

The binary is $SSLMEM_BIN, else <repo>/target/debug/sslmem (`cargo build` makes it); the
bundle is the repository's models/fashion-mnist-canaries. Each server listens on a free
port (`--port 0`) and logs `listening on http://ADDR` on stderr, where the port is read.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import List, Optional
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[3]
BUNDLE = REPO / "models" / "fashion-mnist-canaries"
API_KEY = "s3cret-key"


def binary() -> Path:
    return Path(os.environ.get("SSLMEM_BIN") or REPO / "target" / "debug" / "sslmem")


class Server:
    """One `sslmem serve` child process."""

    def __init__(self, *extra: str, bundle: Path = BUNDLE) -> None:
        exe = binary()
        if not exe.is_file():
            pytest.fail(f"no sslmem binary at {exe}: run `cargo build` or set SSLMEM_BIN")
        # The server reads SSLMEM_* variables as flags: none of the caller's may leak in
        # (SSLMEM_HOME, where ONNX Runtime is cached, is not a flag).
        env = {
            k: v for k, v in os.environ.items() if not k.startswith("SSLMEM_") or k == "SSLMEM_HOME"
        }
        env["RUST_LOG"] = "info"
        self.args = [str(exe), "serve", "--port", "0", "--bundle", str(bundle), *extra]
        self.proc = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.log: List[str] = []
        self.url: Optional[str] = None
        started = threading.Event()

        def read() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.log.append(line)
                m = re.search(r"listening on (http://\S+)", line)
                if m and self.url is None:
                    self.url = m.group(1)
                    started.set()
            started.set()  # the process ended

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not started.wait(120) or self.url is None:
            self.stop()
            pytest.fail(f"sslmem serve did not start ({' '.join(self.args)}):\n{''.join(self.log)}")
        parts = urlsplit(self.url)
        self.host, self.port = parts.hostname, parts.port

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.kill()
        code = self.proc.wait(30)
        self._reader.join(10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        return code

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=10).text

    def count(self, route: str, status: int) -> float:
        """sslmem_http_requests_total for one route and status (0 before the first)."""
        want = (f'route="{route}"', f'status="{status}"')
        for line in self.metrics().splitlines():
            if line.startswith("sslmem_http_requests_total{") and all(w in line for w in want):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def wait_in_flight(self, n: int, timeout: float = 30) -> None:
        """Waits until `n` requests are in flight (the metrics request itself counts)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.metrics().splitlines():
                if (
                    line.startswith("sslmem_http_requests_in_flight ")
                    and float(line.split()[1]) == n
                ):
                    return
            time.sleep(0.02)
        raise AssertionError(f"never {n} requests in flight")


class Stall:
    """A real request whose body never finishes: it holds one of the server's concurrency
    permits (taken before the body is read) until released."""

    def __init__(self, server: Server, path: str = "/v1/score") -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=30)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {server.host}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        self.sock.sendall(head.encode())
        server.wait_in_flight(2)

    def release(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Stall":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@pytest.fixture(scope="session")
def server():
    """The default server."""
    s = Server()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def auth_server():
    """A server that wants `Authorization: Bearer <API_KEY>` on /v1/*."""
    s = Server("--api-key", API_KEY)
    yield s
    s.stop()


@pytest.fixture(scope="session")
def tiny_server():
    """Tiny limits: one request at a time, three images and 30,000 bytes per request."""
    s = Server("--max-concurrent", "1", "--max-images", "3", "--max-body-bytes", "30000")
    yield s
    s.stop()


@pytest.fixture
def fresh_server():
    """A server of its own, for tests that shut it down."""
    servers: List[Server] = []

    def start(*extra: str) -> Server:
        servers.append(Server(*extra))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


@pytest.fixture(scope="session")
def one_model_server(tmp_path_factory, images):
    """The default bundle's f alone (a one-model bundle), calibrated on the first four of
    `images` as its reference population."""
    import json
    import shutil

    d = tmp_path_factory.mktemp("one-model")
    shutil.copy(BUNDLE / "f0.onnx", d / "f0.onnx")
    m = json.loads((BUNDLE / "sslmem.json").read_text())
    for k in ("g", "split"):
        m.pop(k, None)
    (d / "sslmem.json").write_text(json.dumps(m))
    ref = tmp_path_factory.mktemp("reference")
    for p in images[:4]:
        shutil.copy(p, ref / p.name)
    s = Server("--reference", str(ref), "--pairs", "4", bundle=d)
    yield s
    s.stop()


def sigterm(server: Server) -> None:
    server.proc.send_signal(signal.SIGTERM)


@pytest.fixture(scope="session")
def images(tmp_path_factory) -> List[Path]:
    """Six random 28x28 greyscale PNGs (the model's input size), seeded."""
    d = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(20261130)
    paths = []
    for i in range(6):
        p = d / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


@pytest.fixture(scope="session")
def odd_image(tmp_path_factory) -> Path:
    """A 40x32 RGB PNG: scorable (views are resized), but not alignable."""
    p = tmp_path_factory.mktemp("odd") / "odd.png"
    rng = np.random.default_rng(7)
    Image.fromarray(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)).save(p)
    return p
