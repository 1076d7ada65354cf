"""`benchmarks/serve.py --ray`: the Ray path's cost and its scaling, in one run.

On a two-node `ray start` cluster on this machine (one CPU per node, token auth, loopback: the
tests' cluster, tests/ray_started.py):

1. overhead: `janus serve --ray --replicas 1 --cpus-per-replica 1` against a local `janus serve`
   given the same CPU (OMP_NUM_THREADS=1 and one core by taskset), both up at once and each
   measured right after the other: images/s with K=8 concurrent clients, and a chat's time to
   first token on the idle server;
2. scaling: two replicas of one CPU each against the one replica, at K=8 (sequential: three
   replicas at once would need a third CPU).

SUMMARY gains ray_overhead_k8 (local images/s over Ray's, 1 = no cost), ray_ttft_extra_ms
(Ray's first token minus the local one) and ray_two_replicas_ratio (two replicas' images/s over
one's).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
K = 8


class RayServer:
    """A `janus serve --ray` driver on CLUSTER, serving MODEL with REPLICAS of one CPU."""

    def __init__(self, cluster, model: Path, dtype: str, replicas: int, max_batch: int, port: int = 0):
        from ray_started import free_port

        self.port = port or free_port()  # Serve keeps its first HTTP port for the cluster's life
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile("w+")
        command = [sys.executable, "-m", "janus_cli", "serve", "--ray", "--address", cluster.address]
        command += ["-m", str(model), "--dtype", dtype, "--port", str(self.port), "--replicas", str(replicas)]
        command += ["--cpus-per-replica", "1", "--max-batch", str(max_batch), "--max-queue", "512"]
        self.proc = subprocess.Popen(
            command, env=cluster.env(RAY_AUTH_MODE="token"), stdout=subprocess.DEVNULL, stderr=self.log
        )
        deadline = time.monotonic() + 900
        while "serving on http://" not in self._said():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("janus serve --ray did not start:\n" + self._said()[-3000:])
            time.sleep(1)
        self._wait_replicas(replicas)

    def _said(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def _wait_replicas(self, n: int) -> None:
        import httpx

        deadline = time.monotonic() + 300
        while set(httpx.get(self.url + "/health", timeout=30).json().get("replicas", {}).values()) != {n}:
            if time.monotonic() > deadline:
                raise SystemExit(f"{n} replicas did not come up")
            time.sleep(1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(240)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run(model: Path, dtype: str, max_batch: int, reps: int) -> dict:
    """The measurements above; returns the rows and the three SUMMARY entries."""
    sys.path.insert(0, str(ROOT / "tests"))
    import httpx
    from ray_started import StartedCluster
    from serve import Server, concurrent_images, ttft

    async def first_token(url: str) -> float:
        async with httpx.AsyncClient(timeout=3600) as client:
            await ttft(client, url)  # warm: the first request pays for lazy imports
            return min([await ttft(client, url) for _ in range(reps)])

    rows: dict = {"k": K, "max_batch": max_batch, "ray": {}}
    root = Path(tempfile.mkdtemp(prefix="janus-serve-ray-"))
    cluster = StartedCluster(root)
    block = (
        "export RAY_AUTH_MODE=token\nray get-auth-token --generate\n"
        "ray start --head --port 6379\nray start --address HEAD:6379\n"
    )
    servers: list = []
    try:
        r = cluster.run_block(block, root, cluster.env(), timeout=300)
        if r.returncode != 0:
            raise SystemExit("the cluster did not start:\n" + r.stderr)
        one_cpu = {"OMP_NUM_THREADS": "1"}
        local = Server(model, dtype, max_batch, env=one_cpu, cpus="0")
        servers.append(local)
        ray1 = RayServer(cluster, model, dtype, 1, max_batch)
        servers.append(ray1)
        for label, url in (("local, 1 CPU", local.url), ("ray, 1 replica", ray1.url)):
            c = asyncio.run(concurrent_images(url, K))
            c["ttft_s"] = asyncio.run(first_token(url))
            rows["ray"][label] = c
            print(
                f"{label:<16} K={K}  {c['images_per_s']:.3f} images/s  p50 {c['p50_s']:.1f}s  "
                f"first token {c['ttft_s'] * 1000:.0f} ms",
                flush=True,
            )
        local.stop()
        ray1.stop()
        servers.clear()
        ray2 = RayServer(cluster, model, dtype, 2, max_batch, port=ray1.port)
        servers.append(ray2)
        c = rows["ray"]["ray, 2 replicas"] = asyncio.run(concurrent_images(ray2.url, K))
        print(
            f"{'ray, 2 replicas':<16} K={K}  {c['images_per_s']:.3f} images/s  p50 {c['p50_s']:.1f}s  "
            f"images per replica {sorted(c['served_by'].values())}",
            flush=True,
        )
    finally:
        for s in servers:
            s.stop()
        cluster.stop()
    got = rows["ray"]
    summary = {
        "ray_overhead_k8": got["local, 1 CPU"]["images_per_s"] / got["ray, 1 replica"]["images_per_s"],
        "ray_ttft_extra_ms": (got["ray, 1 replica"]["ttft_s"] - got["local, 1 CPU"]["ttft_s"]) * 1000,
        "ray_two_replicas_ratio": got["ray, 2 replicas"]["images_per_s"]
        / got["ray, 1 replica"]["images_per_s"],
    }
    return {"rows": rows, "summary": summary, "cpu_note": os.cpu_count()}
