"""A Ray cluster started with `ray start`, as a user starts one, on this machine, for the tests.

Every node runs `ray start ... --block` in its own session, so the test stops exactly the
processes it started (their process groups), never `ray stop`, which stops every Ray cluster of
the machine's user, other people's too. Ray's files go to a short private temp dir (its unix
socket paths must stay under 108 bytes) and its token to a private HOME.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).parent / "ray")

# What the README's `ray start` lines become here: in the foreground of their own session (so
# the test can stop them), bounded in time, on loopback, one CPU each, with private files.
RAY_START_WRAPPER = r"""
ray() {
  if [ "$1" != start ]; then "$RAY_BIN" "$@"; return; fi
  shift
  local n log pid
  n=$(( $(wc -l < "$RAY_NODES") + 1 ))
  log="$RAY_LOGS/node-$n.log"
  extra=(--block --num-cpus 1 --node-ip-address 127.0.0.1 --temp-dir "$RAY_TMP" --disable-usage-stats)
  case " $* " in
    *" --head "*) extra+=(--include-dashboard=false --dashboard-port "$RAY_DASHBOARD_PORT");;
  esac
  # from / : a worker's working directory is its node's, so a relative path would not resolve
  (cd / && exec setsid "$RAY_BIN" start "$@" "${extra[@]}" >"$log" 2>&1 < /dev/null) &
  pid=$!
  echo "$pid" >> "$RAY_NODES"
  for _ in $(seq 240); do
    grep -qs "Ray runtime started" "$log" && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; return 1; }
    sleep 0.5
  done
  echo "ray start did not come up in 120 s" >&2; return 1
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StartedCluster:
    """The state of one test cluster: where it listens, its private HOME (and token), its nodes."""

    def __init__(self, root: Path):
        self.root = root
        self.home = root / "home"
        self.home.mkdir()
        self.logs = root / "logs"
        self.logs.mkdir()
        self.nodes_file = root / "nodes"
        self.nodes_file.write_text("")
        self.ray_tmp = tempfile.mkdtemp(prefix="jr-", dir="/tmp")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of every process of the test: the private HOME holds the token."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update(HOME=str(self.home), COLUMNS="200", RAY_BIN=RAY, RAY_NODES=str(self.nodes_file))
        env.update(RAY_LOGS=str(self.logs), RAY_TMP=self.ray_tmp, RAY_DASHBOARD_PORT=str(free_port()))
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env.update(extra)
        return env

    def token(self) -> str:
        return (self.home / ".ray" / "auth_token").read_text().strip()

    def run_block(
        self, block: str, cwd: Path, env: dict[str, str], timeout: float
    ) -> subprocess.CompletedProcess:
        """A README block in bash, its `HEAD:6379` being this cluster, `ray start` wrapped."""
        block = (
            block.replace("HEAD:6379", self.address)
            .replace("--port 6379", f"--port {self.port}")
            .replace("/shared/", f"{cwd}/")
        )
        script = RAY_START_WRAPPER + block
        return subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def node_pids(self) -> list[int]:
        return [int(line) for line in self.nodes_file.read_text().split()]

    def stop(self) -> None:
        """SIGTERM to each node's process group (ray start cleans up), SIGKILL to what is left,
        then any process still naming this cluster's temp dir (a worker that left the group)."""
        pids = self.node_pids()
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            for pid in pids:
                try:
                    os.killpg(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and any(_group_alive(pid) for pid in pids):
                time.sleep(0.2)
        for pid in _processes_naming(self.ray_tmp):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.ray_tmp, ignore_errors=True)  # sessions, logs, sockets: outside pytest's tmp

    def left_running(self) -> list[int]:
        return _processes_naming(self.ray_tmp)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return any(_pgid(pid) == pgid and not _zombie(pid) for pid in _all_pids())


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return True


def _processes_naming(text: str) -> list[int]:
    found = []
    for pid in _all_pids():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
        if text.encode() in cmdline and not _zombie(pid):
            found.append(pid)
    return found


# Run as a driver of the cluster (with its token): the live nodes, and the node of every model
# batch of the latest job that ran any (the `submit` calls of Ray Data's MapWorker actors, from
# the task events the GCS keeps; Ray's state API would need the dashboard, ray[default]).
PLACEMENT_SCRIPT = """
import json, ray
ray.init(address=ADDRESS, logging_level="error", log_to_driver=False)
nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
batches = {}
for e in ray._private.state.state._get_all_task_events():
    if "MapWorker" in e.task_info.name and e.task_info.name.endswith(".submit") and e.state_updates.node_id:
        job = int.from_bytes(e.job_id, "little")
        batches.setdefault(job, {})[e.task_id.hex()] = e.state_updates.node_id.hex()
latest = batches[max(batches)] if batches else {}
print(json.dumps({"nodes": nodes, "batch_nodes": sorted(latest.values())}))
"""


def placement(cluster: StartedCluster) -> dict:
    """{"nodes": live node ids, "batch_nodes": the node id of each batch of the latest job}."""
    script = PLACEMENT_SCRIPT.replace("ADDRESS", repr(cluster.address))
    r = subprocess.run(
        [sys.executable, "-c", script],
        env=cluster.env(RAY_AUTH_MODE="token"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])
