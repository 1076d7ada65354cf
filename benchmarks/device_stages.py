"""The stages of benchmarks/device_check.py that check rather than time: the environment, the
fixtures, the device-parametrized tests and the command line end to end. Each stage is a
function (device, quick, record) that calls record(case) per finished case and raises (or exits
non-zero) when something failed; the timing stages are in device_timing.py."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fixture_models import fixtures_module

ROOT = Path(__file__).parents[1]
TESTS = ROOT / "tests"
# The parity tests (fp32 goldens), the pipeline identity tests and the bf16 CUDA sanity tests.
FULL_TESTS = [
    "test_parity_janus.py",
    "test_janusflow.py",
    "test_vae.py",
    "test_pipelines.py",
    "test_cuda_bf16.py",
]
QUICK_TESTS = [  # the device plumbing of each file, in CPU seconds (no 576-token run)
    "test_parity_janus.py::test_siglip_and_aligner",
    "test_vae.py::test_tiny_matches_diffusers[5]",
    "test_pipelines.py::test_over_long_prompt_is_refused",
    "test_cuda_bf16.py",  # skipped off CUDA
]
CLI_TIMEOUT_S = 100  # one `janus` command (times --slack); the stage's own timeout bounds them all


def environment(device: str, quick: bool, record) -> None:
    import torch

    try:
        import transformers

        hf = transformers.__version__
    except ImportError:
        hf = None
    cuda = torch.cuda.is_available()
    props = torch.cuda.get_device_properties(0) if cuda else None
    record(
        {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cuda_available": cuda,
            "transformers": hf,
            "gpu": props.name if props else None,
            "gpu_memory_gb": round(props.total_memory / 1e9, 1) if props else None,
            "capability": list(torch.cuda.get_device_capability(0)) if cuda else None,
        }
    )
    if device == "cuda" and not cuda:
        sys.exit("error: --device cuda: torch.cuda.is_available() is False")


def fixtures(device: str, quick: bool, record) -> None:
    """Every fixture checkpoint (about 0.8 GB each: numpy hashes them from their manifests), and
    for a full run the full-size SDXL-VAE of test_vae's slow test, in parallel processes
    (conftest publishes each folder atomically)."""
    from concurrent.futures import ProcessPoolExecutor

    names = sorted(p.name for p in (TESTS / "fixtures" / "checkpoints").iterdir() if p.is_dir())
    names += [] if quick else ["sdxl_vae_full"]
    with ProcessPoolExecutor(max_workers=max(1, min(len(names), (os.cpu_count() or 1) - 1))) as pool:
        for name, seconds, folder in pool.map(materialize, names):
            record({"fixture": name, "seconds": seconds, "folder": folder})


def materialize(name: str) -> tuple[str, float, str]:
    conftest = fixtures_module()
    t = time.monotonic()
    folder = conftest.vae_full_dir() if name == "sdxl_vae_full" else conftest.checkpoint_dir(name)
    return name, round(time.monotonic() - t, 2), str(folder)


def tests(device: str, quick: bool, record) -> None:
    """pytest on the test subset with JANUS_TEST_DEVICE=DEVICE (set by the driver)."""
    files = [str(TESTS / f) for f in (QUICK_TESTS if quick else FULL_TESTS)]
    cmd = [sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", *files]
    t = time.monotonic()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    print(r.stdout[-20000:], r.stderr[-5000:], sep="\n", flush=True)
    last = (r.stdout.strip().splitlines() or [""])[-1]  # "3 passed, 1 skipped in 9.1s"
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", last)}
    failed = [
        line.split(" ", 1)[1] for line in r.stdout.splitlines() if line.startswith(("FAILED ", "ERROR "))
    ]
    record(
        {
            "device": os.environ.get("JANUS_TEST_DEVICE"),
            "files": [Path(f).name for f in files],
            "returncode": r.returncode,
            "seconds": round(time.monotonic() - t, 2),
            "counts": counts,
            "failed": failed,
        }
    )
    if r.returncode != 0:
        sys.exit(f"error: pytest exited {r.returncode}")


def cli(device: str, quick: bool, record) -> None:
    """`python -m janus_cli` as a user runs it on DEVICE (default dtype: bf16 on CUDA); every
    command runs even when an earlier one failed."""
    conftest = fixtures_module()
    pro, flow = (
        str(conftest.checkpoint_dir("janus-pro-1b-tiny")),
        str(conftest.checkpoint_dir("janusflow-1.3b-tiny")),
    )
    vae = str(conftest.checkpoint_dir("janusflow-1.3b-tiny-vae"))
    image = str(conftest.image_path("square0.png"))
    common, fox = ["--device", device], "a red fox in snow"
    timeout = CLI_TIMEOUT_S * float(os.environ.get("DEVICE_CHECK_SLACK", "1"))
    if quick:  # one 576-token run (2 images), the flow in 2 steps: 30 s of CPU time in all
        commands = {
            "describe": (["describe", image, "-p", "What is this?", "-m", pro, "--max-tokens", "4"], 0),
            "generate -n 2 --quantize int8": (
                ["generate", fox, "-m", pro, "-n", "2", "--quantize", "int8"],
                2,
            ),
            "flow-generate": (["flow-generate", fox, "-m", flow, "--vae", vae, "--steps", "2"], 1),
        }
    else:
        commands = {
            "describe": (
                ["describe", image, "-p", "What is in this image?", "-m", pro, "--max-tokens", "16"],
                0,
            ),
            "generate -n 4": (["generate", fox, "-m", pro, "-n", "4", "--seed", "1"], 4),
            "flow-generate": (
                ["flow-generate", fox, "-m", flow, "--vae", vae, "--steps", "30", "--seed", "1"],
                1,
            ),
            "generate --quantize int8": (["generate", fox, "-m", pro, "-n", "2", "--quantize", "int8"], 2),
            "generate --quantize int4": (["generate", fox, "-m", pro, "-n", "2", "--quantize", "int4"], 2),
        }
    if quick and device == "cpu":  # inductor's C++ build takes minutes on a small CPU: not for the dry run
        record(
            {
                "command": "generate --compile",
                "skipped": "--quick on the CPU (inductor builds C++ for minutes)",
            }
        )
    else:
        commands["generate --compile"] = (["generate", fox, "-m", pro, "-n", "2", "--compile"], 2)
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, (argv, images)) in enumerate(commands.items()):
            out = ["-o", str(Path(tmp) / str(i))] if images else []
            if out:
                Path(out[1]).mkdir()
            t = time.monotonic()
            try:
                r = subprocess.run(
                    [sys.executable, "-m", "janus_cli", *argv, *common, *out],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                )
                rc, stdout, stderr = r.returncode, r.stdout, r.stderr
            except subprocess.TimeoutExpired as e:
                partial = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout or ""
                rc, stdout, stderr = None, partial, f"timed out after {timeout:.0f} s"
            paths = [p for p in stdout.splitlines() if p.endswith(".png") and Path(p).is_file()]
            ok = rc == 0 and (len(paths) == images if images else bool(stdout.strip()))
            print(f"$ janus {name}: rc {rc}\n{stdout[-2000:]}\n{stderr[-3000:]}", flush=True)
            record(
                {
                    "command": name,
                    "ok": ok,
                    "returncode": rc,
                    "seconds": round(time.monotonic() - t, 2),
                    "images": len(paths),
                    "stdout": stdout.strip()[-300:] if not images else None,
                    "stderr_tail": (stderr.strip().splitlines() or [""])[-1][-300:],
                }
            )
            if not ok:
                failed.append(name)
    if failed:
        sys.exit(f"error: failed: {', '.join(failed)}")


STAGES = {
    "environment": environment,
    "fixtures": fixtures,
    "tests": tests,
    "cli": cli,
}  # timing: device_timing
