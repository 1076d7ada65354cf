"""The Ray path's parts in process, without a cluster: a replica's first item (taken, or refused
as 400 / 429), its health check, a lost replica's stream ending in an error, the ingress handing
a burst to Serve one request at a time, and `serve run`'s builder arguments. The real cluster is
driven in test_serve_ray.py."""

from __future__ import annotations

import asyncio

import pytest
from conftest import checkpoint_dir

from janus_cli.pipelines.requests import Finished, ImageRequest
from janus_cli.pipelines.text_to_image import GenerateSettings

pytest.importorskip("ray.serve", exc_type=ImportError)


@pytest.fixture(scope="module")
def replica():
    from janus_cli.server.ray_replica import JanusReplica, ReplicaSpec

    r = JanusReplica(
        ReplicaSpec(
            str(checkpoint_dir("janus-pro-1b-tiny")), "tiny", "cpu", "float32", max_batch=1, max_queue=1
        )
    )
    yield r
    r.__del__()


async def first_and_rest(gen, take: int):
    out = []
    async for item in gen:
        out.append(item)
        if len(out) == take:
            break
    await gen.aclose()  # what Serve does when the client leaves: the finally cancels the ticket
    return out


def image(prompt="a fox", **kw) -> ImageRequest:
    return ImageRequest(prompt, GenerateSettings(n=1, seed=0, cfg=4.0, **kw))


def test_a_replica_says_first_whether_it_took_the_request(replica):
    from janus_cli.server.ray_replica import Accepted, Refused

    [first, second] = asyncio.run(first_and_rest(replica.generate(image()), 2))
    assert first == Accepted("local") and type(second).__name__ == "ImageStep"
    [refused] = asyncio.run(first_and_rest(replica.generate(image(temperature=-1.0)), 1))
    assert isinstance(refused, Refused) and refused.status == 400 and "temperature" in refused.message
    assert replica.model_info().family == "janus" and replica.model_info().max_batch == 1


def test_a_full_replica_refuses_with_a_retry_after(replica):
    from janus_cli.server.ray_replica import Refused

    replica.scheduler.max_queue, saved = 0, replica.scheduler.max_queue
    try:
        [refused] = asyncio.run(first_and_rest(replica.generate(image()), 1))
    finally:
        replica.scheduler.max_queue = saved
    assert isinstance(refused, Refused) and refused.status == 429 and refused.retry_after >= 1


def test_health_fails_once_the_scheduler_thread_is_gone(replica):
    replica.check_health()
    replica.scheduler.close()
    with pytest.raises(RuntimeError, match="scheduler thread is not running"):
        replica.check_health()


def test_a_replica_lost_mid_stream_ends_the_request_with_an_error():
    from janus_cli.server.ray_backend import _events

    async def dying():
        yield "an event"
        raise ConnectionError("the actor died")

    async def collect():
        return [e async for e in _events(dying())]

    got = asyncio.run(collect())
    assert got[0] == "an event" and isinstance(got[1], Finished)
    assert "replica serving this request stopped" in got[1].error and "the actor died" in got[1].error


class SlowToTake:
    """A fake deployment handle whose replicas take a request (first item) after TAKE_S, or
    never (NEVER of them); it records when each request was handed over and taken."""

    def __init__(self, take_s: float, never: int = 0):
        self.take_s, self.never = take_s, never
        self.log: list[tuple[str, int, float]] = []

    def options(self, **kw):
        return self

    @property
    def generate(self):
        return self

    def remote(self, request):
        from janus_cli.server.ray_replica import Accepted

        k = len([e for e in self.log if e[0] == "sent"])
        self.log.append(("sent", k, asyncio.get_running_loop().time()))

        async def events():
            await asyncio.sleep(3600 if k < self.never else self.take_s)
            self.log.append(("taken", k, asyncio.get_running_loop().time()))
            yield Accepted(f"replica-{k}")
            yield Finished()

        return FakeResponse(events())


class FakeResponse:
    """What a streaming handle call returns: async iteration and cancel()."""

    def __init__(self, events):
        self.events = events

    def __aiter__(self):
        return self

    def __anext__(self):
        return self.events.__anext__()

    def cancel(self):
        pass


def test_a_burst_is_handed_to_serve_one_request_at_a_time():
    """Serve's router routes requests that arrive together on the same queue lengths (a burst
    of 8 on two idle replicas went 3 + 5 or 1 + 7, measured): the ingress hands each over once
    the one before was taken, or after ROUTE_BOUND_S if it is not (a request queued for a full
    service, or sent to a dead replica, holds the others up no longer)."""
    from janus_cli.server import ray_backend
    from janus_cli.server.ray_backend import ROUTE_BOUND_S, RayBackend

    async def burst(handle, n):
        backend = RayBackend({"m": handle}, "janus")
        return await asyncio.gather(*(backend.open("m", object()) for _ in range(n)))

    fast = SlowToTake(take_s=0.02)
    streams = asyncio.run(burst(fast, 4))
    assert [s.headers[ray_backend.REPLICA_HEADER] for s in streams] == [f"replica-{k}" for k in range(4)]
    assert [e[:2] for e in fast.log] == [(what, k) for k in range(4) for what in ("sent", "taken")]

    stuck = SlowToTake(take_s=0.02, never=1)  # the first is never taken: the others go on
    backend = RayBackend({"m": stuck}, "janus")

    async def two_behind_a_stuck_one():
        first = asyncio.ensure_future(backend.open("m", object()))
        rest = await asyncio.wait_for(asyncio.gather(*(backend.open("m", object()) for _ in range(2))), 5)
        first.cancel()
        return rest

    rest = asyncio.run(two_behind_a_stuck_one())
    assert [s.headers[ray_backend.REPLICA_HEADER] for s in rest] == ["replica-1", "replica-2"]
    sent = {k: t for what, k, t in stuck.log if what == "sent"}
    assert ROUTE_BOUND_S * 0.9 <= sent[1] - sent[0] < ROUTE_BOUND_S + 2  # slack: a loaded 2-core CI


def test_the_builder_refuses_unknown_args_and_reads_lists():
    from janus_cli.server.ray_app import _list, build_app

    with pytest.raises(ValueError, match="unknown janus args"):
        build_app({"modle": "x"})
    assert _list("a, b") == ["a", "b"] and _list(["a"]) == ["a"] and _list(None) == []
    app = build_app({"model": str(checkpoint_dir("janus-pro-1b-tiny")), "replicas": "2", "max_batch": "3"})
    assert type(app).__name__ == "Application"


def test_the_ray_benchmark_imports():
    import importlib.util
    import sys
    from pathlib import Path

    benchmarks = Path(__file__).parents[1] / "benchmarks"
    sys.path.insert(0, str(benchmarks))
    try:
        spec = importlib.util.spec_from_file_location("benchmark_serve_ray", benchmarks / "serve_ray.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(benchmarks))
    assert callable(module.run) and module.K == 8


def test_a_ray_option_without_ray_is_one_line():
    from conftest import assert_one_line_error, run_janus

    r = run_janus("serve", "--replicas", "2", "-m", str(checkpoint_dir("janus-pro-1b-tiny")))
    assert r.returncode == 2
    assert_one_line_error(r, "--replicas serves on Ray: add --ray")
