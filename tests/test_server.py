"""A real `janus serve` of the tiny Janus-Pro and JanusFlow fixtures, driven with the official
`openai` client: golden answers and images, streaming, continuous batching, disconnects."""

from __future__ import annotations

import base64
import json
import threading
import time

import httpx
import pytest
from conftest import assert_uint8_close, checkpoint_dir, golden_json, golden_tensors, image_path
from serve_helpers import data_url, pixels, serving

PRO, FLOW = "janus-pro-1b-tiny", "janusflow-1.3b-tiny"
openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    out = tmp_path_factory.mktemp("served")
    args = [
        "-m",
        str(checkpoint_dir(PRO)),
        "-m",
        str(checkpoint_dir(FLOW)),
        "--vae",
        str(checkpoint_dir(f"{FLOW}-vae")),
        "--max-batch",
        "4",
        "--output-dir",
        str(out),
        "--no-access-log",
    ]
    with serving(*args) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def names(client):
    models = {m.family: m.id for m in client.models.list().data}
    assert set(models) == {"janus", "janusflow"}
    assert models["janus"] == checkpoint_dir(PRO).name  # a folder is served under its name
    return models


def ask(client, model, stream=False, **kw):
    u = golden_json(PRO)["understand"]
    content = [
        {"type": "image_url", "image_url": {"url": data_url(image_path(u["image"]))}},
        {"type": "text", "text": u["question"]},
    ]
    return client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": content}],
        temperature=0,
        max_tokens=24,
        stream=stream,
        **kw,
    )


def test_chat_with_an_image_gives_the_golden_greedy_text(client, names):
    u = golden_json(PRO)["understand"]
    r = ask(client, names["janus"])
    assert r.choices[0].message.content == u["greedy_text"]
    assert (
        r.choices[0].finish_reason == "length" and r.object == "chat.completion" and r.model == names["janus"]
    )
    assert r.usage.prompt_tokens == len(u["input_ids"])  # the 576 image tokens included
    assert r.usage.completion_tokens == 24


def test_chat_streams_the_same_text(client, names):
    chunks = list(ask(client, names["janus"], stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == golden_json(PRO)["understand"]["greedy_text"]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 24


def test_images_generate_gives_the_golden_images(client, names):
    g = golden_json(PRO)["generate"]
    r = client.images.generate(
        model=names["janus"],
        prompt=g["prompt"],
        n=2,
        size="384x384",
        extra_body={"cfg": 5, "temperature": 0, "seed": 0},
    )
    golden = golden_tensors(PRO)["generate.greedy_images_uint8"]
    assert len(r.data) == 2
    for k, (item, expected) in enumerate(zip(r.data, golden, strict=True)):
        image, png = pixels(item.b64_json)
        assert_uint8_close(image, expected)
        recipe = json.loads(png.info["janus-cli"])
        assert (recipe["prompt"], recipe["seed"], recipe["index"], recipe["cfg"], recipe["temperature"]) == (
            g["prompt"],
            k,
            k,
            5.0,
            0.0,
        )
        assert item.model_extra["seed"] == k


def test_janusflow_gives_its_golden_images(client, names):
    g = golden_json(FLOW)["generate"]
    r = client.images.generate(
        model=names["janusflow"],
        prompt=g["prompt"],
        n=2,
        extra_body={"cfg": 2, "steps": 5, "seed": 12345, "noise": "official"},
    )
    for item, expected in zip(r.data, golden_tensors(FLOW)["generate.images_uint8_5_steps"], strict=True):
        image, png = pixels(item.b64_json)
        assert_uint8_close(image, expected)
        recipe = json.loads(png.info["janus-cli"])
        assert (recipe["steps"], recipe["noise"], recipe["seed"]) == (5, "official", 12345)


def image_alone(server, model, prompt, seed):
    body = {"model": model, "prompt": prompt, "n": 1, "seed": seed, "cfg": 4, "temperature": 1.0}
    r = server.post("/v1/images/generations", json=body)
    assert r.status_code == 200, r.text
    return pixels(r.json()["data"][0]["b64_json"])[0]


def stream_events(server, body, seen: list, stop_after: int | None = None):
    """POST an image stream, appending its decoded events to SEEN; with STOP_AFTER, close the
    stream after that many progress events."""
    with httpx.stream(
        "POST", server.url + "/v1/images/generations", json={**body, "stream": True}, timeout=300
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            seen.append(line[6:])
            progress = sum('"image_generation.progress"' in e for e in seen)
            if stop_after is not None and progress >= stop_after:
                return  # closes the connection


GREEDY = {"cfg": 5, "temperature": 0}  # the golden's settings: any seed gives the golden image


def test_a_request_joining_mid_image_gets_the_images_it_gets_alone(server, names):
    model, g = names["janus"], golden_json(PRO)["generate"]
    first = {"model": model, "prompt": g["prompt"], "n": 1, "seed": 11, **GREEDY}
    seen: list[str] = []
    t = threading.Thread(target=stream_events, args=(server, first, seen))
    t.start()
    deadline = time.monotonic() + 120
    while not any('"step":' in e and json.loads(e)["step"] >= 48 for e in seen):  # the first is mid-image
        assert t.is_alive() and time.monotonic() < deadline
        time.sleep(0.02)
    joined = image_alone(server, model, "a red fox", 5)  # another prompt and length, sampled, joins
    t.join(300)
    events = [json.loads(e) for e in seen if e != "[DONE]"]
    assert seen[-1] == "[DONE]"
    progress = [e for e in events if e["type"] == "image_generation.progress"]
    assert progress[-1]["step"] == progress[-1]["steps"] == 576 and {e["index"] for e in progress} == {0}
    assert len(progress) <= 50  # thinned out for progress bars
    done = [e for e in events if e["type"] == "image_generation.completed"]
    assert len(done) == 1 and done[0]["seed"] == 11
    assert_uint8_close(pixels(done[0]["b64_json"])[0], golden_tensors(PRO)["generate.greedy_images_uint8"][0])
    assert_uint8_close(joined, image_alone(server, model, "a red fox", 5))


def test_a_closed_stream_leaves_and_the_rest_finish(server, names):
    model, g = names["janus"], golden_json(PRO)["generate"]
    made = server.metric("janus_images_made_total")
    other: dict = {}
    body = {"model": model, "prompt": g["prompt"], "n": 1, "seed": 2, "response_format": "url", **GREEDY}
    t = threading.Thread(target=lambda: other.update(r=server.post("/v1/images/generations", json=body)))
    t.start()
    seen: list[str] = []
    stream_events(
        server, {"model": model, "prompt": "a castle", "n": 2, "seed": 1, "cfg": 4}, seen, stop_after=3
    )
    deadline = time.monotonic() + 30
    while server.metric("janus_active_images") > 1:  # the closed stream's two images leave
        assert time.monotonic() < deadline, "the closed stream's rows stayed"
        time.sleep(0.05)
    t.join(300)
    assert other["r"].status_code == 200, other["r"].text
    item = other["r"].json()["data"][0]
    got = httpx.get(item["url"], timeout=30)  # response_format url: written, then served by the server
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    image, _ = pixels(base64.b64encode(got.content).decode())
    assert_uint8_close(image, golden_tensors(PRO)["generate.greedy_images_uint8"][0])
    assert server.get("/files/" + "x" * 22 + ".png").status_code == 404
    assert server.metric("janus_images_made_total") == made + 1  # the castle's two never made
    assert server.healthy()


def test_models_health_and_metrics(server, names):
    assert server.get("/health").json()["status"] == "ok"
    assert {m["id"] for m in server.get("/v1/models").json()["data"]} == set(names.values())
    text = server.get("/metrics").text
    for name in [
        "janus_requests_total",
        "janus_request_seconds_bucket",
        "janus_queue_depth",
        "janus_rows_last_step",
        "janus_image_tokens_total",
        "janus_images_made_total",
        "janus_image_tokens_per_busy_second",
    ]:
        assert name in text, name
    assert 'route="/v1/images/generations",status="200"' in text


def test_a_model_is_required_when_two_are_served(server):
    r = server.post("/v1/images/generations", json={"prompt": "a fox"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"


def test_no_access_lines_with_no_access_log(server):
    assert server.get("/health?probe=no-access-log").status_code == 200
    time.sleep(0.5)  # what a line would take to reach the log
    assert not [line for line in server.log if "HTTP/1.1" in line], server.log
