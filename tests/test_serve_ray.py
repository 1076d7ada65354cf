"""`janus serve --ray` on a real two-node `ray start` cluster on this machine (token auth on, one
CPU per node, loopback; started and stopped by process id, see ray_started.py): two replicas of
the tiny Janus-Pro behind one URL, driven with the official `openai` client.

One cluster and one server for the module, in file order: the golden chat (plain, streamed) and
images (what the local `janus serve` gives, test_server.py), the API key, both replicas used (the
x-janus-replica header), a closed stream's rows freed, 429 before any 200 when full, a page
smoke test in Chromium, then the faults: a replica SIGKILLed mid-image, and a shutdown that lets
a running image finish. Each replica has max_batch 1, so it takes 2 requests (an image and an
answer) and the ingress queues 1 more: 5 images in flight fill the service.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import assert_one_line_error, assert_uint8_close, checkpoint_dir, golden_json, golden_tensors
from conftest import image_path as fixture_image
from ray_started import StartedCluster, free_port
from serve_helpers import data_url, pixels

pytest.importorskip("ray.serve", exc_type=ImportError)
openai = pytest.importorskip("openai")
pytestmark = pytest.mark.slow

PRO = "janus-pro-1b-tiny"
KEY = "ray-test-key"
GREEDY = {"cfg": 5, "temperature": 0}  # the golden's settings: any seed gives the golden image
CLUSTER_BLOCK = """
export RAY_AUTH_MODE=token
ray get-auth-token --generate
ray start --head --port 6379
ray start --address HEAD:6379
"""


class RayServer:
    """The `janus serve --ray` driver: its URL, process, and what it printed."""

    def __init__(self, cluster: StartedCluster, out: Path, *extra: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.out = out
        self.log = tempfile.TemporaryFile("w+")
        command = [sys.executable, "-m", "janus_cli", "serve", "--ray", "--address", cluster.address]
        command += ["-m", str(checkpoint_dir(PRO)), "--port", str(self.port), "--api-key", KEY]
        command += ["--device", "cpu", "--dtype", "float32", "--output-dir", str(out), *extra]
        self.proc = subprocess.Popen(
            command, env=cluster.env(RAY_AUTH_MODE="token"), stdout=subprocess.DEVNULL, stderr=self.log
        )

    def said(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def wait_serving(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while "serving on http://" not in self.said():
            assert self.proc.poll() is None, self.said()[-3000:]
            assert time.monotonic() < deadline, "not serving in time: " + self.said()[-3000:]
            time.sleep(0.5)

    def get(self, path: str, **kw) -> httpx.Response:
        return httpx.get(self.url + path, headers={"Authorization": f"Bearer {KEY}"}, timeout=30, **kw)

    def post(self, path: str, body: dict, timeout: float = 300) -> httpx.Response:
        return httpx.post(
            self.url + path, json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=timeout
        )

    def metric(self, name: str) -> float:
        lines = self.get("/metrics").text.splitlines()
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.split("{")[0] == name)

    def settled_metric(self, name: str, quiet_s: float = 2.5, timeout: float = 60) -> float:
        """NAME once it has not changed for QUIET_S: replicas publish their stats every second,
        so a count read right after a request ended may not hold it yet."""
        deadline = time.monotonic() + timeout
        value, since = self.metric(name), time.monotonic()
        while time.monotonic() - since < quiet_s:
            assert time.monotonic() < deadline, f"{name} kept changing"
            time.sleep(0.5)
            now = self.metric(name)
            if now != value:
                value, since = now, time.monotonic()
        return value

    def wait_metric(self, name: str, ok, timeout: float = 60) -> float:
        deadline = time.monotonic() + timeout
        while not ok(value := self.metric(name)):
            assert time.monotonic() < deadline, f"{name} stayed at {value}"
            time.sleep(0.5)
        return value

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(180)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray-serve")
    cluster = StartedCluster(root)
    try:
        r = cluster.run_block(CLUSTER_BLOCK, root, cluster.env(), timeout=300)
        assert r.returncode == 0, r.stderr + "".join(p.read_text() for p in cluster.logs.iterdir())
        yield cluster
    finally:
        cluster.stop()
        assert cluster.left_running() == [], "processes of the test cluster outlived it"


@pytest.fixture(scope="module")
def server(cluster, tmp_path_factory):
    out = tmp_path_factory.mktemp("ray-images")
    s = RayServer(
        cluster, out, "--replicas", "2", "--cpus-per-replica", "1", "--max-batch", "1", "--max-queue", "1"
    )
    try:
        s.wait_serving()
        s.wait_metric("janus_replicas", lambda n: n == 2)
        yield s
    finally:
        s.stop()
        sys.stderr.write(s.said()[-5000:])


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=300)


def ask(client, stream=False, **kw):
    u = golden_json(PRO)["understand"]
    content = [
        {"type": "image_url", "image_url": {"url": data_url(fixture_image(u["image"]))}},
        {"type": "text", "text": u["question"]},
    ]
    messages = [{"role": "user", "content": content}]
    return client.chat.completions.with_raw_response.create(
        model=checkpoint_dir(PRO).name, messages=messages, temperature=0, max_tokens=24, stream=stream, **kw
    )


def test_a_driver_without_the_token_fails_at_once_in_one_line(cluster):
    started = time.monotonic()
    command = [sys.executable, "-m", "janus_cli", "serve", "--ray", "--address", cluster.address]
    r = subprocess.run(
        [*command, "-m", str(checkpoint_dir(PRO))],
        env=cluster.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert time.monotonic() - started < 60 and r.returncode == 6
    assert_one_line_error(r, f"the Ray cluster at {cluster.address} uses token authentication")


def test_chat_gives_the_golden_greedy_text_plain_and_streamed(client):
    u = golden_json(PRO)["understand"]
    raw = ask(client)
    r = raw.parse()
    assert r.choices[0].message.content == u["greedy_text"] and r.usage.completion_tokens == 24
    assert r.usage.prompt_tokens == len(u["input_ids"])
    assert raw.headers["x-janus-replica"]
    raw = ask(client, stream=True, stream_options={"include_usage": True})
    chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == u["greedy_text"]
    assert chunks[-1].usage.completion_tokens == 24
    assert raw.headers["content-type"].startswith("text/event-stream") and raw.headers["x-janus-replica"]


def test_images_are_the_golden_ones_with_their_recipe(client):
    g = golden_json(PRO)["generate"]
    r = client.images.generate(
        model=checkpoint_dir(PRO).name, prompt=g["prompt"], n=2, extra_body={**GREEDY, "seed": 0}
    )
    for k, (item, expected) in enumerate(
        zip(r.data, golden_tensors(PRO)["generate.greedy_images_uint8"], strict=True)
    ):
        image, png = pixels(item.b64_json)
        assert_uint8_close(image, expected)
        recipe = json.loads(png.info["janus-cli"])
        assert (recipe["prompt"], recipe["seed"], recipe["index"], recipe["dtype"]) == (
            g["prompt"],
            k,
            k,
            "float32",
        )


def test_the_api_key_guards_the_port(server):
    assert httpx.get(server.url + "/v1/models", timeout=30).status_code == 401
    assert httpx.get(server.url + "/health", timeout=30).json()["replicas"] == {checkpoint_dir(PRO).name: 2}


def test_another_port_on_a_cluster_already_serving_is_one_line(server, cluster):
    """Serve's proxy keeps the address it started on: a second driver asking for another port is
    told where it is, and the running service is untouched."""
    command = [sys.executable, "-m", "janus_cli", "serve", "--ray", "--address", cluster.address]
    r = subprocess.run(
        [*command, "-m", str(checkpoint_dir(PRO)), "--port", str(free_port())],
        env=cluster.env(RAY_AUTH_MODE="token"),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert_one_line_error(r, f"Serve already runs on this cluster, its proxy on 127.0.0.1:{server.port}")
    assert httpx.get(server.url + "/health", timeout=30).status_code == 200


def stream_image(server, body: dict, seen: list, hold: threading.Event | None = None) -> dict:
    """POST an image stream; its status, headers and events (appended to SEEN as they come).
    With HOLD: once the status is known, wait for HOLD, then close the stream."""
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.stream(
        "POST",
        server.url + "/v1/images/generations",
        json={**body, "stream": True},
        headers=headers,
        timeout=300,
    ) as r:
        got = {"status": r.status_code, "headers": dict(r.headers)}
        if r.status_code != 200:
            got["body"] = json.loads(r.read())
            return got
        seen.append(f"replica {r.headers['x-janus-replica']}")
        if hold is not None:
            hold.wait(300)
            return got  # closes the connection
        for line in r.iter_lines():
            if line.startswith("data: "):
                seen.append(line[6:])
    return got


def held_open(server, bodies: list[dict], waiting: int = 0) -> list[dict]:
    """BODIES streamed at once, each held open until all but WAITING (queued in the ingress,
    they get their status once a replica frees up) have their status, then closed."""
    results: list = [None] * len(bodies)
    seens: list[list] = [[] for _ in bodies]
    hold = threading.Event()

    def one(k):
        results[k] = stream_image(server, bodies[k], seens[k], hold)

    threads = [threading.Thread(target=one, args=(k,)) for k in range(len(bodies))]
    for t in threads:
        t.start()
        time.sleep(0.2)
    deadline = time.monotonic() + 120
    while sum(bool(s) or r is not None for s, r in zip(seens, results, strict=True)) < len(bodies) - waiting:
        assert time.monotonic() < deadline, (results, seens)
        time.sleep(0.05)
    hold.set()
    for t in threads:
        t.join(60)
    return results


def image_body(seed: int, **kw) -> dict:
    return {"model": checkpoint_dir(PRO).name, "prompt": "a red fox", "n": 1, "seed": seed, "cfg": 4, **kw}


def test_both_replicas_serve_and_closed_streams_free_their_rows(server):
    made = server.settled_metric("janus_images_made_total")  # the earlier tests' images counted
    results = held_open(server, [image_body(k) for k in range(4)])
    assert [r["status"] for r in results] == [200] * 4
    replicas = [r["headers"]["x-janus-replica"] for r in results]
    print("request -> replica:", {f"image {k}": rep for k, rep in enumerate(replicas)})
    assert sorted(replicas.count(r) for r in set(replicas)) == [2, 2], replicas  # 2 fill a replica
    server.wait_metric("janus_active_images", lambda n: n == 0, timeout=60)  # their rows left
    server.wait_metric("janus_queue_depth", lambda n: n == 0, timeout=60)
    assert server.settled_metric("janus_images_made_total") == made  # none of the four was finished


def test_a_full_service_answers_429_with_retry_after_before_any_200(server):
    results = held_open(server, [image_body(10 + k) for k in range(7)], waiting=1)
    statuses = [r["status"] for r in results]
    assert sorted(statuses) == [200] * 5 + [429] * 2, statuses  # 2 replicas x 2, and 1 queued
    for r in results:
        if r["status"] == 429:
            assert (
                r["body"]["error"]["code"] == "rate_limit_exceeded" and int(r["headers"]["retry-after"]) >= 1
            )
    server.wait_metric("janus_active_images", lambda n: n == 0, timeout=60)


def test_the_page_generates_through_the_ray_endpoint(server):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("needs Debian's chromium")
    expect = sync_api.expect
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.set_default_timeout(120_000)
            page.goto(server.url + "/")
            page.get_by_label("API key").fill(KEY)
            page.get_by_label("API key").press("Enter")
            expect(page.locator("#model option")).to_have_count(1, timeout=60_000)
            page.get_by_label("Prompt").fill(golden_json(PRO)["generate"]["prompt"])
            page.get_by_label("Images", exact=True).fill("1")
            page.get_by_label("Seed", exact=True).fill("0")
            page.get_by_label("Temperature", exact=True).fill("0")
            page.get_by_role("button", name="Generate").click()
            expect(page.locator("#gallery img")).to_have_count(1, timeout=240_000)
            src = page.locator("#gallery img").first.get_attribute("src")
            image, _ = pixels(src.split(",", 1)[1])
            assert_uint8_close(image, golden_tensors(PRO)["generate.greedy_images_uint8"][0])
            assert errors == []
        finally:
            browser.close()


def replica_pids(cluster: StartedCluster) -> list[int]:
    """The model replicas' processes of this test's cluster (their titles name the deployment;
    their ancestry leads to one of the cluster's `ray start` processes)."""
    nodes = set(cluster.node_pids())
    found = []
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"ServeReplica:janus:model-" in title and _descends(pid, nodes):
            found.append(pid)
    return found


def _descends(pid: int, ancestors: set[int]) -> bool:
    while pid > 1:
        if pid in ancestors:
            return True
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return False
    return False


PROGRESS = '"image_generation.progress"'


def test_a_killed_replica_ends_its_requests_cleanly_and_comes_back(server, cluster):
    pids = replica_pids(cluster)
    assert len(pids) == 2, pids
    files = set(server.out.iterdir())
    bodies = [image_body(20 + k, response_format="url") for k in range(4)]
    results: list = [None] * 4
    seens: list[list] = [[] for _ in range(4)]

    def one(k):
        results[k] = stream_image(server, bodies[k], seens[k])

    threads = [threading.Thread(target=one, args=(k,)) for k in range(4)]  # 2 per replica
    for t in threads:
        t.start()
        time.sleep(0.2)
    deadline = time.monotonic() + 120
    # all four taken (the ingress hands them over one at a time) and both replicas mid-image
    while not all(seens) or len({s[0] for s in seens if any(PROGRESS in e for e in s)}) < 2:
        assert time.monotonic() < deadline, seens
        time.sleep(0.1)
    victim = pids[0]
    os.kill(victim, signal.SIGKILL)
    for t in threads:
        t.join(300)
        assert not t.is_alive(), "a client hung"
    by_replica: dict[str, list[str]] = {}
    print("statuses and replicas:", [(r["status"], r["headers"].get("x-janus-replica")) for r in results])
    for r, seen in zip(results, seens, strict=True):
        assert r["status"] == 200 and seen[-1] == "[DONE]", (r, seen[-3:])
        last = json.loads(seen[-2])
        outcome = "error" if "error" in last else last["type"]
        by_replica.setdefault(r["headers"]["x-janus-replica"], []).append(outcome)
        if "error" in last:
            print("a client of the killed replica saw:", seen[-2])
            assert last["error"]["type"] == "server_error" and "replica" in last["error"]["message"]
    assert sorted(map(sorted, by_replica.values())) == [
        ["error", "error"],
        ["image_generation.completed", "image_generation.completed"],
    ], by_replica
    new = set(server.out.iterdir()) - files
    assert len(new) == 2 and all(p.suffix == ".png" and not p.name.startswith(".") for p in new), new
    # Serve starts a new replica; /health and /metrics count two again, and it serves
    server.wait_metric("janus_replicas", lambda n: n == 2, timeout=180)
    assert server.get("/health").status_code == 200
    assert victim not in replica_pids(cluster)
    r = server.post(
        "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    )
    assert r.status_code == 200, r.text


def test_stopping_lets_a_running_image_finish(server):
    seen: list = []
    t = threading.Thread(target=stream_image, args=(server, image_body(30), seen))
    t.start()
    deadline = time.monotonic() + 120
    while not any('"image_generation.progress"' in e for e in seen):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    code = server.stop()
    t.join(300)
    assert seen[-1] == "[DONE]" and json.loads(seen[-2])["type"] == "image_generation.completed", seen[-2:]
    assert code == 0, server.said()[-2000:]


def test_serve_run_deploys_the_example_yaml(server, cluster, tmp_path):
    """Ray's own tool on examples/serve-ray.yaml (its model, sizes and port pointed at the test's),
    after the driver above has deleted its application; SIGINT tears it down."""
    text = (Path(__file__).parents[1] / "examples" / "serve-ray.yaml").read_text()
    for old, new in [
        ("model: janus-pro-1b ", f"model: {checkpoint_dir(PRO)} "),
        ("replicas: 2", "replicas: 1"),
        ("cpus_per_replica: 4", "cpus_per_replica: 1"),
        ("port: 8000", f"port: {server.port}"),
        ("output_dir: /tmp/janus-serve-images", f"output_dir: {tmp_path}"),
        ("max_batch: 8", "max_batch: 2\n      device: cpu\n      dtype: float32"),
    ]:
        assert old in text, old
        text = text.replace(old, new)
    (tmp_path / "serve.yaml").write_text(text)
    command = [sys.executable, "-c", "import sys; from ray.serve.scripts import cli; sys.exit(cli())"]
    log = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(
        [*command, "run", str(tmp_path / "serve.yaml"), "--address", cluster.address],
        env=cluster.env(RAY_AUTH_MODE="token"),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, log.seek(0) or log.read()[-3000:]
            try:
                if httpx.get(server.url + "/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        models = httpx.get(server.url + "/v1/models", timeout=30).json()["data"]
        assert [m["id"] for m in models] == [checkpoint_dir(PRO).name] and models[0]["max_batch"] == 2
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        assert httpx.post(server.url + "/v1/chat/completions", json=body, timeout=120).status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_without_ray_serve_is_one_line_naming_the_extra(tmp_path):
    fake = tmp_path / "ray"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('no ray here')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run(
        [sys.executable, "-m", "janus_cli", "serve", "--ray", "-m", str(checkpoint_dir(PRO))],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1
    assert_one_line_error(r, "janus serve --ray needs Ray Serve: pip install 'janus-cli[ray,serve]'")
