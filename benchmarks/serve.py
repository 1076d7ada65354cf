"""`janus serve` under load: continuous batching against one image at a time, in one run.

    python benchmarks/serve.py [--quick] [--model DIR] [--dtype bfloat16] [--keep DIR]

Builds a full-size Janus-Pro-1B checkpoint with random bf16 weights (the published config and
key set, benchmarks/load.py's way; the tokenizer of the tiny fixture, whose ids fit the full
vocabulary), starts `janus serve` on a free loopback port and drives it with an async HTTP
client (httpx.AsyncClient):

- images/s and latency p50/p95 with K = 1, 4, 8 concurrent clients each asking for one image
  (576 tokens, cfg 5), against a server started with `--max-batch 1` (one image at a time,
  what the official demo does) and one with the default `--max-batch`, both up at once and
  measured one right after the other at each K;
- a chat request's time to first token (streamed, an image and a question) on the idle
  server, and while 8 images are generating;
- a bounded mixed load (chats, image requests, model lists; a fifth of them malformed: bad
  JSON, unknown size, unknown model, http image URLs, oversized images) with the count of 5xx
  answers and the server's resident memory before and after.

Prints a table, writes benchmarks/results/serve-<date>.json, and ends with one line
`SUMMARY serve_images_per_s_k8_ratio=… chat_ttft_busy_ratio=… server_errors=… rss_growth=…`.
--quick keeps 576 tokens per image and runs fewer mixed requests (60 instead of 300).
--model serves another checkpoint folder instead (e.g. a tiny fixture, for a smoke run).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
PUBLISHED = ROOT / "weights" / "published" / "Janus-Pro-1B"
KS = (1, 4, 8)
PROMPT = "A close-up photo of a red fox in the snow, golden hour, wide angle."


def build_checkpoint(folder: Path) -> Path:
    """Full-size random Janus-Pro-1B (bf16 safetensors) under FOLDER, reused when present."""
    if (folder / "model.safetensors").exists():
        return folder
    import torch
    from safetensors.torch import save_file

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import checkpoint_dir

    tiny = checkpoint_dir("janus-pro-1b-tiny")
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in (
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "processor_config.json",
        "preprocessor_config.json",
    ):
        shutil.copy(tiny / name, tmp / name)
    shutil.copy(PUBLISHED / "config.json", tmp / "config.json")
    manifest = json.loads((PUBLISHED / "manifest.json").read_text())
    gen = torch.Generator().manual_seed(0)
    state = {
        t["key"]: torch.empty(t["shape"], dtype=torch.bfloat16).normal_(0, 0.02, generator=gen)
        for t in manifest["tensors"]
    }
    save_file(state, str(tmp / "model.safetensors"))
    del state
    tmp.rename(folder)
    return folder


class Server:
    """`python -m janus_cli serve` in a subprocess on a free loopback port."""

    def __init__(
        self, model: Path, dtype: str, max_batch: int | None, env: dict | None = None, cpus: str | None = None
    ):
        args = ["-m", str(model), "--dtype", dtype, "--port", "0", "--max-queue", "512", "--max-body-mb", "4"]
        args += ["--max-batch", str(max_batch)] if max_batch else []
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            **(env or {}),
        }
        pinned = ["taskset", "-c", cpus] if cpus else []  # CPUS: the cores it may use (0,1 ...)
        self.proc = subprocess.Popen(
            [*pinned, sys.executable, "-m", "janus_cli", "serve", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.log: list[str] = []
        for line in self.proc.stderr:
            self.log.append(line)
            print("  server:", line.rstrip(), flush=True)
            if line.startswith("serving on "):
                self.url = line.split()[2]
                break
        else:
            raise SystemExit("the server did not start:\n" + "".join(self.log))
        threading.Thread(target=lambda: self.log.extend(self.proc.stderr), daemon=True).start()

    def rss(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) * 1024

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def image(client, url: str, seed: int, replicas: list | None = None) -> float:
    """Seconds for one image; REPLICAS gets the replica that made it (`janus serve --ray`)."""
    t = time.perf_counter()
    r = await client.post(
        url + "/v1/images/generations", json={"prompt": PROMPT, "n": 1, "seed": seed, "cfg": 5}
    )
    r.raise_for_status()
    if replicas is not None:
        replicas.append(r.headers.get("x-janus-replica", "local"))
    return time.perf_counter() - t


async def concurrent_images(url: str, k: int) -> dict:
    import httpx

    replicas: list[str] = []
    async with httpx.AsyncClient(timeout=3600) as client:
        t = time.perf_counter()
        latencies = await asyncio.gather(*(image(client, url, seed, replicas) for seed in range(k)))
        wall = time.perf_counter() - t
    q = sorted(latencies)
    return {
        "k": k,
        "images_per_s": k / wall,
        "p50_s": statistics.median(q),
        "p95_s": q[min(len(q) - 1, round(0.95 * (len(q) - 1)))],
        "served_by": dict(collections.Counter(replicas)),  # replica -> images
    }


def chat_body(question: str = "Describe this image.", tokens: int = 8) -> dict:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (384, 384), (200, 80, 40)).save(buf, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": question}]
    return {
        "messages": [{"role": "user", "content": content}],
        "max_tokens": tokens,
        # sampled: random weights' greedy answer can be an end-of-sentence token and no text at all
        "temperature": 1.0,
        "seed": 0,
        "stream": True,
    }


async def ttft(client, url: str) -> float:
    """Seconds to a chat's first token: a one-token answer (the image's encoding, the prefill and
    one decoding step), timed whole. Timing the first streamed text instead fails on random
    weights, whose tokens mostly fall outside the borrowed tiny tokenizer and decode to nothing."""
    t = time.perf_counter()
    r = await client.post(url + "/v1/chat/completions", json={**chat_body(tokens=1), "stream": False})
    r.raise_for_status()
    if r.json()["usage"]["completion_tokens"] != 1:
        raise RuntimeError(f"a one-token answer came back as {r.json()['usage']}")
    return time.perf_counter() - t


async def active_images(client, url: str) -> float:
    text = (await client.get(url + "/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("janus_active_images{")
    )


async def chat_latency(url: str, reps: int) -> dict:
    import httpx

    async with httpx.AsyncClient(timeout=3600) as client:
        idle = [await ttft(client, url) for _ in range(reps)]
        images = [asyncio.create_task(image(client, url, 100 + i)) for i in range(8)]
        deadline = time.monotonic() + 600
        while await active_images(client, url) < 8 and time.monotonic() < deadline:  # all 8 mid-image
            await asyncio.sleep(0.05)
        busy = [await ttft(client, url) for _ in range(reps)]
        await asyncio.gather(*images)
    return {"ttft_idle_s": statistics.median(idle), "ttft_busy_s": statistics.median(busy)}


def mixed_requests(n: int) -> list[tuple[str, str, dict | bytes, bool]]:
    """N (method, path, body, malformed) requests, a fifth malformed, plus an image request
    per 50, in a fixed shuffled order."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (6000, 6000)).save(buf, format="PNG")  # 36 Mpx in a few KB
    bomb = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()

    def chat_about(url: str) -> dict:
        part = {"type": "image_url", "image_url": {"url": url}}
        return {"messages": [{"role": "user", "content": [part]}], "max_tokens": 4}

    chat, images = "/v1/chat/completions", "/v1/images/generations"
    bad = [
        ("POST", chat, b"{not json"),
        ("POST", images, {"prompt": "a fox", "size": "1024x1024"}),
        ("POST", images, {"prompt": "a fox", "model": "dall-e-3"}),
        ("POST", chat, chat_about("https://example.com/a.png")),
        ("POST", chat, chat_about(bomb)),
    ]
    good = [("GET", "/v1/models", {}), ("POST", chat, {**chat_body(tokens=4), "stream": False})]
    out = [(*bad[i // 5 % len(bad)], True) if i % 5 == 0 else (*good[i % len(good)], False) for i in range(n)]
    out += [("POST", images, {"prompt": PROMPT, "n": 1, "seed": i}, False) for i in range(max(1, n // 50))]
    random.Random(0).shuffle(out)
    return out


async def mixed_load(url: str, n: int, concurrency: int = 16) -> dict:
    """MIXED_REQUESTS(N), CONCURRENCY at a time: how many answers were 4xx and 5xx, and how
    many were not what they should be (a malformed one not 4xx, a good one not 200)."""
    import httpx

    statuses: list[tuple[int, bool]] = []
    gate = asyncio.Semaphore(concurrency)

    async def one(client, method, path, body, malformed):
        async with gate:
            if isinstance(body, bytes):
                r = await client.request(
                    method, url + path, content=body, headers={"content-type": "application/json"}
                )
            else:
                r = await client.request(method, url + path, json=body if method == "POST" else None)
            statuses.append((r.status_code, malformed))

    async with httpx.AsyncClient(timeout=3600) as client:
        await asyncio.gather(*(one(client, *req) for req in mixed_requests(n)))
    wrong = sum((not 400 <= s < 500) if bad else s != 200 for s, bad in statuses)
    return {
        "requests": len(statuses),
        "malformed": sum(bad for _, bad in statuses),
        "4xx": sum(400 <= s < 500 for s, _ in statuses),
        "5xx": sum(s >= 500 for s, _ in statuses),
        "unexpected": wrong,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick", action="store_true", help="60 mixed requests instead of 300, one chat per latency"
    )
    ap.add_argument(
        "--model", type=Path, help="serve this checkpoint folder instead of full-size random Janus-Pro-1B"
    )
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--keep", type=Path, help="build (or reuse) the random checkpoint here")
    ap.add_argument(
        "--ks",
        type=int,
        nargs="+",
        default=list(KS),
        help="concurrent clients to measure (K=8 for the SUMMARY)",
    )
    ap.add_argument(
        "--ray",
        action="store_true",
        help="instead: janus serve --ray on a two-node one-CPU-each cluster here, against the "
        "local server on one CPU, and two replicas against one (benchmarks/serve_ray.py)",
    )
    args = ap.parse_args()
    model = args.model or build_checkpoint(
        (args.keep or Path(tempfile.gettempdir()) / "janus-serve-bench") / "janus-pro-1b-random"
    )
    if args.ray:
        return ray_main(model, args)
    rows: dict = {
        "model": str(args.model or "Janus-Pro-1B (random weights)"),
        "dtype": args.dtype,
        "quick": args.quick,
    }
    # Both servers up at once and each K measured on one right after the other, so that a
    # shared machine's load drifts the same way for both sides of the ratio.
    servers = {"one at a time": Server(model, args.dtype, 1), "batched": Server(model, args.dtype, None)}
    try:
        for label in servers:
            rows[label] = []
        for k in args.ks:
            for label, server in servers.items():
                c = asyncio.run(concurrent_images(server.url, k))
                rows[label].append(c)
                print(
                    f"{label:<14} K={k}  {c['images_per_s']:.3f} images/s  "
                    f"p50 {c['p50_s']:.1f}s  p95 {c['p95_s']:.1f}s",
                    flush=True,
                )
        servers.pop("one at a time").stop()
        server = servers["batched"]
        rows["chat"] = asyncio.run(chat_latency(server.url, 1 if args.quick else 3))
        chat = rows["chat"]
        print(
            f"chat time to first token: idle {chat['ttft_idle_s']:.2f}s, "
            f"while 8 images generate {chat['ttft_busy_s']:.2f}s",
            flush=True,
        )
        before = server.rss()
        m = rows["mixed"] = asyncio.run(mixed_load(server.url, 60 if args.quick else 300))
        m |= {"rss_before": before, "rss_after": server.rss(), "server_alive": server.proc.poll() is None}
        print(
            f"mixed load: {m['requests']} requests ({m['malformed']} malformed), "
            f"{m['4xx']} 4xx, {m['5xx']} 5xx, "
            f"{m['unexpected']} unexpected, RSS {before / 2**30:.2f} -> {m['rss_after'] / 2**30:.2f} GiB",
            flush=True,
        )
    finally:
        for server in servers.values():
            server.stop()
    k8 = {label: rows[label][-1]["images_per_s"] for label in ("one at a time", "batched")}
    summary = {
        "serve_images_per_s_k8_ratio": k8["batched"] / k8["one at a time"],
        "chat_ttft_busy_ratio": rows["chat"]["ttft_busy_s"] / rows["chat"]["ttft_idle_s"],
        "server_errors": rows["mixed"]["5xx"],
        "rss_growth": rows["mixed"]["rss_after"] / rows["mixed"]["rss_before"] - 1,
    }
    rows["summary"] = summary
    out = ROOT / "benchmarks" / "results" / f"serve-{time.strftime('%Y-%m-%d')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")
    print(
        "SUMMARY "
        + " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items())
    )


def ray_main(model: Path, args) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from serve_ray import K, run

    got = run(model, args.dtype, max_batch=K, reps=1 if args.quick else 3)
    got["model"], got["dtype"] = str(args.model or "Janus-Pro-1B (random weights)"), args.dtype
    out = ROOT / "benchmarks" / "results" / f"serve-ray-{time.strftime('%Y-%m-%d')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(got, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")
    print("SUMMARY " + " ".join(f"{k}={v:.3f}" for k, v in got["summary"].items()))


if __name__ == "__main__":
    main()
