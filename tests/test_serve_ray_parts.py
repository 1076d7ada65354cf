"""The Ray path's parts in process, without a cluster: a replica's first item (taken, or refused
as 400 / 429), its health check, a lost replica's stream ending in an error, and `serve run`'s
builder arguments. The real cluster is driven in test_serve_ray.py."""

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
