"""The checks before a Ray job that need no cluster: address forms, what a worker that fits no
node is told, and the stderr filter that keeps Ray's C++ notice out of -q runs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from janus_cli.distributed import preflight
from janus_cli.errors import ConnectionFailed, InputError


def test_address_forms():
    assert preflight.host_port("10.0.0.1:6379") == ("10.0.0.1", 6379)
    assert preflight.host_port("[::1]:6379") == ("::1", 6379)
    others = ("auto", "ray://head:10001", "http://head:8265", "head")
    assert [preflight.host_port(a) for a in others] == [None] * 4


def node(cpus: float, gpus: float = 0, alive: bool = True) -> dict:
    return {"Alive": alive, "Resources": {"CPU": cpus, **({"GPU": gpus} if gpus else {})}}


def test_a_worker_fits_a_node_that_has_all_it_asks_for():
    preflight.check_fits([node(1), node(4, 1)], 4, 1, "the cluster", "--cpus-per-worker 4")  # no error
    nodes = [node(2), node(1, 1), node(8, alive=False)]
    with pytest.raises(InputError) as e:
        preflight.check_fits(
            nodes, 2, 1, "the Ray cluster at h:1", "--cpus-per-worker 2, --gpus-per-worker 1"
        )
    assert str(e.value) == (
        "the Ray cluster at h:1 has no node with 2 CPUs and 1 GPU for one worker "
        "(--cpus-per-worker 2, --gpus-per-worker 1): it has 1 node of 2 CPUs, 1 node of 1 CPU + 1 GPU"
    )
    with pytest.raises(InputError, match="it has no live node"):
        preflight.check_fits([], 1, 0, "the cluster", "--cpus-per-worker 1")


def test_nothing_listening_is_one_line_at_once():
    import socket

    with socket.socket() as s:  # a port that was free a moment ago and has no listener
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionFailed) as e:
        preflight.probe(f"127.0.0.1:{port}", from_env=False, timeout_s=2)
    assert str(e.value).startswith(f"no Ray cluster at 127.0.0.1:{port} (connection refused within 2 s)")
    assert ConnectionFailed.exit_code == 6


FILTER_SCRIPT = r"""
import os, sys
from janus_cli.distributed.stderr_filter import dropping
print("before", file=sys.stderr, flush=True)
with dropping(b"has constructor arguments in the object store"):
    os.write(2, b"[E core_worker.cc:2465] Actor X has constructor arguments in the object store and ...\n")
    os.write(2, b"a C++ line to keep\n")
    print("a Python line to keep", file=sys.stderr)
    os.write(2, b"a last line without its newline")
print("\nafter", file=sys.stderr)
"""


def test_the_filter_drops_only_the_marked_lines_and_keeps_the_order():
    r = subprocess.run([sys.executable, "-c", FILTER_SCRIPT], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    kept = [
        "before",
        "a C++ line to keep",
        "a Python line to keep",
        "a last line without its newline",
        "after",
    ]
    assert r.stderr == "".join(line + "\n" for line in kept)
