"""A real `janus serve` in a subprocess for the server tests: a free loopback port, the tiny
fixture checkpoints in float32 on the CPU, stopped (and its stderr shown) at the end."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).parents[1]


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    log: list[str] = field(default_factory=list)

    def get(self, path: str, **kw) -> httpx.Response:
        return httpx.get(self.url + path, timeout=30, **kw)

    def post(self, path: str, **kw) -> httpx.Response:
        return httpx.post(self.url + path, timeout=120, **kw)

    def healthy(self) -> bool:
        return self.proc.poll() is None and self.get("/health").status_code == 200

    def metric(self, name: str, headers: dict | None = None) -> float:
        """The sum of the samples of the Prometheus metric NAME."""
        text = self.get("/metrics", headers=headers or {}).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.split("{")[0].split(" ")[0] == name
        )


@contextlib.contextmanager
def serving(*args: str, timeout: float = 180):
    """`python -m janus_cli serve ARGS --port 0` until the block ends; yields a Server."""
    cmd = [
        sys.executable,
        "-m",
        "janus_cli",
        "serve",
        "--port",
        "0",
        "--device",
        "cpu",
        "--dtype",
        "float32",
        *args,
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
    log: list[str] = []
    url = None
    deadline = time.monotonic() + timeout
    try:
        for line in proc.stderr:  # the loading status, then "serving on http://..."
            log.append(line)
            if line.startswith("serving on "):
                url = line.split()[2]
                break
            assert time.monotonic() < deadline, "the server did not start in time"
        assert url is not None, "".join(log)
        threading.Thread(target=lambda: log.extend(proc.stderr), daemon=True).start()
        server = Server(url, proc, log)
        while not server.healthy():
            assert proc.poll() is None and time.monotonic() < deadline, "".join(log)
            time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        sys.stderr.write("".join(log))


def data_url(path: Path) -> str:
    kind = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}[path.suffix.lower()]
    return f"data:image/{kind};base64," + base64.b64encode(path.read_bytes()).decode()


def pixels(b64: str):
    """A b64_json PNG as an (H, W, 3) uint8 tensor, and its image (for the metadata)."""
    import numpy as np
    import torch
    from PIL import Image

    img = Image.open(io.BytesIO(base64.b64decode(b64)))
    return torch.from_numpy(np.array(img.convert("RGB"))), img
