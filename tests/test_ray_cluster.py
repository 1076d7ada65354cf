"""`--engine ray` on a cluster started the way the README tells people to: `ray start --head`
with token authentication, and a second node joining it with `ray start --address` (two raylets
on this machine, one CPU each, as Ray's own multi-node tests do).

The README's cluster block is run as written (its `HEAD:6379` pointed at this machine, and each
`ray start` kept in the foreground of its own session so that the test stops only what it
started; see ray_started.py). Then: the same texts and PNG bytes as `--engine local`, the work
on both nodes, nothing on stderr under -q, and one-line errors, within seconds, for a driver
without the token, an address where nothing listens and a worker that fits no node."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import assert_one_line_error, checkpoint_dir, image_path
from ray_started import RAY, StartedCluster, free_port, placement

pytest.importorskip("ray")
pytest.importorskip(
    "ray._private.authentication.authentication_token_setup", reason="no token auth in this Ray"
)

pytestmark = pytest.mark.slow  # minutes: a two-node cluster, three model runs on it, two local ones

README = Path(__file__).parents[1] / "README.md"
IMAGES = ("square0.png", "grey0.png")


def tiny() -> str:
    return str(checkpoint_dir("janus-pro-1b-tiny"))


def scaling_blocks() -> list[str]:
    section = README.read_text().split("## Scaling out", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.S)


def janus(
    cluster: StartedCluster, *args: str, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "janus_cli", *args]
    return subprocess.run(
        command, env=cluster.env(**env), cwd=cwd, capture_output=True, text=True, timeout=300
    )


def describe_one(
    cluster: StartedCluster, *options: str, **env: str
) -> tuple[subprocess.CompletedProcess, float]:
    """A tiny describe on the cluster's engine that should fail before any work: result, seconds."""
    started = time.monotonic()
    image = str(image_path("square0.png"))
    r = janus(
        cluster,
        "describe",
        image,
        "-m",
        tiny(),
        "--engine",
        "ray",
        "--max-tokens",
        "2",
        "-q",
        *options,
        **env,
    )
    return r, time.monotonic() - started


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def started(tmp_path_factory):
    """The README's cluster block, run once: the cluster it starts, and what its janus line wrote."""
    root = tmp_path_factory.mktemp("cluster")
    work = root / "work"
    (work / "photos").mkdir(parents=True)
    for name in IMAGES:
        (work / "photos" / name).write_bytes(image_path(name).read_bytes())
    cluster = StartedCluster(root)
    [block] = [b for b in scaling_blocks() if "ray start --head" in b]
    try:
        r = cluster.run_block(block, work, cluster.env(JANUS_MODEL=tiny(), OMP_NUM_THREADS="1"), timeout=300)
        yield cluster, r, work
    finally:
        cluster.stop()
        assert cluster.left_running() == [], "processes of the test cluster outlived it"


@pytest.fixture(scope="module")
def cluster(started) -> StartedCluster:
    return started[0]


def test_the_readme_block_starts_a_token_cluster_of_two_nodes_and_describes_as_locally(started):
    cluster, r, work = started
    assert r.returncode == 0, r.stderr + "".join(p.read_text() for p in cluster.logs.iterdir())
    # -q: nothing from janus or Ray, not even Ray's C++ notice about constructor arguments; only
    # `ray get-auth-token` says that it made the token
    assert [line for line in r.stderr.splitlines() if line and "authentication token" not in line] == []
    assert len(cluster.token()) >= 32  # `ray get-auth-token --generate` wrote it to HOME
    assert "Token authentication is disabled" not in (cluster.logs / "node-1.log").read_text()
    assert len(placement(cluster)["nodes"]) == 2  # the second `ray start` joined, with the token
    # the block's janus line on the local engine: the same records (one torch thread, as a worker)
    [line] = [line for line in r.args[-1].splitlines() if line.startswith("RAY_ADDRESS=")]
    args = [
        a
        for a in line.split("janus ", 1)[1].split(" > ")[0].split()
        if a not in ("--engine", "ray", "--workers", "2")
    ]
    local = janus(cluster, *args, cwd=work, JANUS_MODEL=tiny(), OMP_NUM_THREADS="1")
    assert local.returncode == 0, local.stderr
    captions = json_lines((work / "captions.jsonl").read_text())
    assert sorted(Path(c["image"]).name for c in captions) == sorted(IMAGES)
    assert all(c["tokens"] > 0 for c in captions)
    assert sorted(captions, key=lambda c: c["image"]) == sorted(
        json_lines(local.stdout), key=lambda c: c["image"]
    )


def test_generate_spreads_over_both_nodes_and_gives_the_local_png_bytes(cluster, tmp_path):
    common = ("a red fox", "-m", tiny(), *"-n 2 --seed 3 --dtype float32 -b 1 --jsonl -q".split())
    local = janus(cluster, "generate", *common, "-o", str(tmp_path / "local"), OMP_NUM_THREADS="1")
    # both workers up before the first batch (Ray Data's own knob), so the two one-image batches
    # go to the two actors, one per one-CPU node, whatever the order in which they load
    ray = ("--engine", "ray", "--ray-address", cluster.address, "--workers", "2", "--cpus-per-worker", "1")
    both_up = {"RAY_DATA_DEFAULT_WAIT_FOR_MIN_ACTORS_S": "120"}
    remote = janus(
        cluster, "generate", *common, "-o", str(tmp_path / "ray"), *ray, RAY_AUTH_MODE="token", **both_up
    )
    assert local.returncode == 0 and remote.returncode == 0, local.stderr + remote.stderr
    assert remote.stderr == ""
    mine, theirs = (sorted(json_lines(r.stdout), key=lambda d: d["index"]) for r in (remote, local))
    assert [{**d, "path": Path(d["path"]).name} for d in mine] == [
        {**d, "path": Path(d["path"]).name} for d in theirs
    ]
    assert all(
        Path(a["path"]).read_bytes() == Path(b["path"]).read_bytes()
        for a, b in zip(mine, theirs, strict=True)
    )
    where = placement(cluster)
    assert len(where["batch_nodes"]) == 2 and set(where["batch_nodes"]) == set(where["nodes"]), where
    print(f"generate: its two batches ran on nodes {where['batch_nodes']}")


NO_TOKEN = {
    "no-token-mode": (
        {},
        "uses token authentication: set RAY_AUTH_MODE=token and the cluster's token in RAY_AUTH_TOKEN",
    ),
    "wrong-token": ({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64}, "refused this process's token"),
    "no-token": (
        {"RAY_AUTH_MODE": "token", "HOME": "/nonexistent"},
        "RAY_AUTH_MODE=token is set, but no token for",
    ),
}


@pytest.mark.parametrize("case", list(NO_TOKEN))
def test_a_driver_without_the_token_fails_at_once_in_one_line(cluster, case):
    auth, expected = NO_TOKEN[case]
    r, seconds = describe_one(cluster, "--ray-address", cluster.address, **auth)
    assert seconds < 40  # Ray alone retries for 20 s, then says "ConnectionError"
    assert r.returncode == 6
    assert_one_line_error(r, expected)
    assert cluster.address in r.stderr and "~/.ray/auth_token" in r.stderr
    print(f"{case}: {r.stderr.strip()}")


def test_a_node_without_the_token_cannot_join(cluster):
    command = [
        RAY,
        "start",
        "--address",
        cluster.address,
        *"--node-ip-address 127.0.0.1 --num-cpus 1".split(),
    ]
    command += ["--temp-dir", cluster.ray_tmp]
    r = subprocess.run(command, env=cluster.env(), capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "InvalidAuthToken" in r.stderr


def test_an_address_where_nothing_listens_fails_at_once_in_one_line(cluster):
    address = f"127.0.0.1:{free_port()}"
    r, seconds = describe_one(cluster, RAY_ADDRESS=address)
    assert seconds < 30
    assert r.returncode == 6
    assert_one_line_error(r, f"no Ray cluster at {address} (connection refused")


FITS_NOWHERE = {
    "cpus": (("--cpus-per-worker", "2"), "no node with 2 CPUs"),
    "gpus": (("--gpus-per-worker", "1"), "no node with 1 CPU and 1 GPU"),
}


@pytest.mark.parametrize("case", list(FITS_NOWHERE))
def test_a_worker_that_fits_no_node_fails_at_once_saying_what_there_is(cluster, case):
    option, needle = FITS_NOWHERE[case]
    r, seconds = describe_one(cluster, "--ray-address", cluster.address, *option, RAY_AUTH_MODE="token")
    assert seconds < 60
    assert r.returncode == 2
    assert_one_line_error(r, f"the Ray cluster at {cluster.address} has {needle} for one worker")
    assert r.stderr.rstrip().endswith("it has 2 nodes of 1 CPU")
