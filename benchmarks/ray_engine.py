"""`janus describe` over a folder: --engine local against --engine ray --workers 2, same run.

    python benchmarks/ray_engine.py [--images 8] [--rounds 2]

Captions N copies of the fixture images with the tiny Janus-Pro checkpoint (tiny language
model, full-size SigLIP, which is where the time goes), timing each command end to end (model
loading and, for Ray, joining the cluster and starting the actors included), interleaved, and
prints images/s and the ray/local ratio. The Ray workers join one local cluster started here
(what `ray start --head` would give), so its start-up is not counted, as on a standing cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import checkpoint_dir, image_path  # noqa: E402

ARGS = ("--max-tokens", "8", "--dtype", "float32", "--jsonl", "-q")


def make_folder(folder: Path, count: int) -> Path:
    names = ("square0.png", "grey0.png", "portrait0.png", "rgba0.png")
    for i in range(count):
        (folder / f"{i:04d}-{names[i % len(names)]}").write_bytes(
            image_path(names[i % len(names)]).read_bytes()
        )
    return folder


def timed(cmd: list[str], env: dict | None = None) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr}")
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    a = parser.parse_args()

    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="warning")
    address = ray.get_runtime_context().gcs_address
    scratch = tempfile.TemporaryDirectory(prefix="janus-bench-")
    folder, model = make_folder(Path(scratch.name), a.images), str(checkpoint_dir("janus-pro-1b-tiny"))
    base = [sys.executable, "-m", "janus_cli", "describe", str(folder), "-m", model, *ARGS]
    cases = {
        "local (all cores, -b 4)": (base, None),
        "local (1 thread, -b 1)": ([*base, "-b", "1"], {"OMP_NUM_THREADS": "1"}),
        f"ray --workers {a.workers} (1 thread each, -b 1)": (
            [*base, "-b", "1", "--engine", "ray", "--ray-address", address, "--workers", str(a.workers)],
            None,
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(a.rounds):  # interleaved, so that the machine's noise hits every case alike
        for name, (cmd, env) in cases.items():
            times[name].append(timed(cmd, env))
    ray.shutdown()
    scratch.cleanup()
    local = statistics.median(times["local (all cores, -b 4)"])
    rows = []
    for name, ts in times.items():
        seconds = statistics.median(ts)
        rows.append(
            {
                "case": name,
                "images": a.images,
                "seconds": round(seconds, 2),
                "images_per_s": round(a.images / seconds, 3),
                "vs_local": round(local / seconds, 2),
            }
        )
        print(
            f"{name:40s} {seconds:7.1f} s  {a.images / seconds:6.3f} images/s  "
            f"x{local / seconds:.2f} vs local"
        )
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "rounds": a.rounds,
    }
    out = ROOT / "benchmarks" / "results" / f"ray-{meta['date']}.json"
    out.write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
