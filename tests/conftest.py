"""Shared fixtures: goldens, images, and tiny checkpoints materialized from their manifests.

Checkpoints are synthesized once into tests/.cache (keyed by the manifest's hash), so a fresh
clone pays ~10 s per checkpoint on the first run and nothing afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
CACHE = Path(os.environ.get("JANUS_TEST_CACHE", HERE / ".cache"))  # elsewhere where tests/.cache cannot be
sys.path.insert(0, str(HERE))

from synth import materialize  # noqa: E402


def checkpoint_dir(name: str) -> Path:
    """The materialized fixture checkpoint NAME (synthesized on first use)."""
    src = FIXTURES / "checkpoints" / name
    digest = hashlib.sha256((src / "manifest.json").read_bytes()).hexdigest()[:12]
    out = CACHE / f"{name}-{digest}"
    if not out.is_dir():
        CACHE.mkdir(exist_ok=True)
        materialize(src, out)
    return out


def test_device():
    """The device the parity and pipeline tests run on: env JANUS_TEST_DEVICE (default cpu).

    On CUDA, TF32 is turned off: the fp32 goldens hold to 1e-4, and TF32's 10-bit mantissa in
    matmuls and convolutions (cuDNN's is on by default) does not."""
    import torch

    device = torch.device(os.environ.get("JANUS_TEST_DEVICE", "cpu"))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return device


test_device.__test__ = False  # a helper, not a test, although pytest collects test_* names


def on_device(x):
    """X (a tensor, or a dict of them such as a golden file) on test_device(); on the CPU the
    very same tensors."""
    if isinstance(x, dict):
        return {k: on_device(v) for k, v in x.items()}
    return x.to(test_device())


def runtime_model(name: str, dtype=None):
    """Fixture checkpoint NAME loaded and prepared as the command line runs it on test_device()
    (on the CPU: oneDNN-blocked linears where PyTorch has oneDNN), in float32 unless DTYPE says
    otherwise."""
    import torch

    from janus_cli.checkpoints.load import load_model
    from janus_cli.pipelines.session import prepare_model

    dtype, device = dtype or torch.float32, test_device()
    return prepare_model(load_model(checkpoint_dir(name), dtype, device), device, dtype)


def golden_json(name: str) -> dict:
    return json.loads((FIXTURES / "goldens" / f"{name}.json").read_text())


def golden_tensors(name: str) -> dict:
    from safetensors.torch import load_file

    return load_file(str(FIXTURES / "goldens" / f"{name}.safetensors"))


def image_path(name: str) -> Path:
    return FIXTURES / "images" / name


def assert_close(actual, golden, rel: float = 1e-4) -> None:
    """The README's tolerance: max |diff| <= rel * max(1, max |golden|)."""
    golden = golden.float()
    bound = rel * max(1.0, golden.abs().max().item())
    diff = (actual.float().cpu() - golden.cpu()).abs().max().item()  # goldens may sit on another device
    assert diff <= bound, f"max |diff| {diff:.3g} > {bound:.3g}"


def assert_uint8_close(actual, golden) -> None:
    """uint8 images after truncation: max |diff| <= 1 on < 1 % of the values.

    The float images are held to 1e-4 (assert_close); truncating (x + 1) * 127.5 flips a level
    wherever a value lies within that error of a step, up to ~2.5 % of values. The visible
    goldens stay under 0.1 % at 2 threads; at 1 thread (fp32 sums split differently) Janus-1.3B's
    VQ decode reached 0.14 %."""
    diff = (actual.int().cpu() - golden.int().cpu()).abs()
    assert diff.max().item() <= 1, f"max |diff| {diff.max().item()}"
    frac = (diff > 0).float().mean().item()
    assert frac < 1e-2, f"{frac:.4%} of values differ"


def run_janus(*args: str, stdin: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real command line (`python -m janus_cli`), as a user runs it."""
    env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "janus_cli", *args],
        capture_output=True,
        text=True,
        input=stdin,
        env=env,
        timeout=600,
    )


def wait_for_lines(path: Path, count: int, proc: subprocess.Popen) -> None:
    """Wait until the file PATH (a manifest being written by PROC) holds COUNT lines."""
    import time

    deadline = time.monotonic() + 300
    while not (path.exists() and path.read_text().count("\n") >= count):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its first item"
        time.sleep(0.05)


def kill_after_first_item(command: list[str], manifest: Path) -> None:
    """Run COMMAND (argv) and kill it, SIGKILL, as soon as MANIFEST has its first line."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_lines(manifest, 1, proc)
        proc.kill()
    finally:
        proc.wait()


# a line a Ray cluster's own daemon sends to every driver that joined it, at any moment (e.g. "disk
# over 95 % full" on a full CI disk): the cluster's news, not the run's output
RAYLET_LINE = re.compile(r"^(\x1b\[\d+m)?\(raylet[,)]")


def assert_one_line_error(result: subprocess.CompletedProcess, needle: str) -> None:
    """A failed run: non-zero exit, nothing on stdout, one `error: ...` line on stderr (besides the
    lines a joined Ray cluster's raylet forwards)."""
    assert result.returncode != 0
    assert result.stdout == ""
    lines = [line for line in result.stderr.strip().splitlines() if not RAYLET_LINE.match(line)]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert needle in lines[0], lines[0]
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="session")
def components() -> dict:
    return golden_tensors("components")


def vae_full_dir() -> Path:
    """The full-size SDXL-VAE of the `sdxl_vae_full` golden: weights + config.json, cached."""
    from synth import publishing, write_weights

    manifest = FIXTURES / "goldens" / "sdxl_vae_full.manifest.json"
    digest = hashlib.sha256(manifest.read_bytes()).hexdigest()[:12]
    out = CACHE / f"sdxl_vae_full-{digest}"
    if not out.is_dir():
        with publishing(out) as tmp:
            write_weights(json.loads(manifest.read_text()), tmp)
            (tmp / "config.json").write_text(json.dumps(golden_json("sdxl_vae_full")["config"]))
    return out


@pytest.fixture
def without_rows_kernels(monkeypatch):
    """PyTorch's own CPU kernels only, as on a machine without a compiler or AVX512-BF16."""
    from janus_cli.kernels import build

    monkeypatch.setenv(build.DISABLE_ENV, "0")
    build.load_rows.cache_clear()
    yield
    monkeypatch.undo()
    build.load_rows.cache_clear()
