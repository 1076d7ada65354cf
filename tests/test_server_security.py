"""`janus serve`'s defences, against a real server with an API key, one allowed origin, a 1 MB
body limit, one image at a time and a queue of one: every bad request gets its OpenAI error
object and a 4xx, and the server goes on answering /health."""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import time
import uuid

import httpx
import pytest
from conftest import checkpoint_dir, image_path
from PIL import Image
from serve_helpers import data_url, serving

KEY = "s3cret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
ORIGIN = "http://ok.example"
openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def server():
    args = [
        "-m",
        str(checkpoint_dir("janus-pro-1b-tiny")),
        "--api-key",
        KEY,
        "--allow-origin",
        ORIGIN,
        "--max-body-mb",
        "1",
        "--max-queue",
        "1",
        "--max-batch",
        "1",
    ]
    with serving(*args) as s:
        yield s


def refused(server, r: httpx.Response, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert "Traceback" not in r.text
    if code is not None:
        assert error["code"] == code, error
    assert server.healthy()
    return error


def chat(image_url: str) -> dict:
    return {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": image_url}},
                    {"type": "text", "text": "What is this?"},
                ],
            }
        ],
        "max_tokens": 2,
    }


def test_the_key_is_required_but_health_stays_open(server):
    refused(server, server.get("/v1/models"), 401, "invalid_api_key")
    refused(
        server, server.get("/v1/models", headers={"Authorization": "Bearer wrong"}), 401, "invalid_api_key"
    )
    refused(server, server.get("/metrics"), 401)
    assert server.get("/v1/models", headers=AUTH).status_code == 200
    assert server.get("/health").status_code == 200
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0).models.list()


def test_a_single_model_needs_no_model_field(server):
    c = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=120)
    r = server.post(
        "/v1/chat/completions",
        headers=AUTH,
        json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
    )
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 2
    assert (
        c.models.retrieve(checkpoint_dir("janus-pro-1b-tiny").name).id
        == checkpoint_dir("janus-pro-1b-tiny").name
    )


def test_a_foreign_host_is_rejected(server):
    refused(
        server, server.get("/v1/models", headers={**AUTH, "Host": "evil.example"}), 403, "host_not_allowed"
    )
    refused(server, server.get("/health", headers={"Host": "rebound.example:8000"}), 403, "host_not_allowed")
    assert server.get("/health", headers={"Host": "localhost"}).status_code == 200


def test_cors_only_for_the_allowed_origin(server):
    plain = server.get("/v1/models", headers=AUTH)
    assert "access-control-allow-origin" not in plain.headers
    other = server.get("/v1/models", headers={**AUTH, "Origin": "http://evil.example"})
    assert other.status_code == 200 and "access-control-allow-origin" not in other.headers
    ok = server.get("/v1/models", headers={**AUTH, "Origin": ORIGIN})
    assert ok.headers["access-control-allow-origin"] == ORIGIN
    pre = httpx.options(
        server.url + "/v1/chat/completions",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == ORIGIN
    bad = httpx.options(
        server.url + "/v1/chat/completions",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert bad.status_code == 403 and "access-control-allow-origin" not in bad.headers


def test_bad_requests_get_error_objects(server):
    post = lambda path, **kw: server.post(path, headers={**AUTH, **kw.pop("headers", {})}, **kw)  # noqa: E731
    refused(
        server,
        post(
            "/v1/chat/completions", content=b"x" * (2 * 2**20), headers={"content-type": "application/json"}
        ),
        413,
        "request_too_large",
    )

    def chunked():
        for _ in range(3):
            yield b" " * 2**19

    refused(
        server,
        post("/v1/chat/completions", content=chunked(), headers={"content-type": "application/json"}),
        413,
    )
    refused(
        server,
        post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}),
        400,
        "invalid_json",
    )
    refused(server, post("/v1/chat/completions", json=[1, 2]), 400, "invalid_json")
    buf = io.BytesIO()
    Image.new("1", (5000, 5000)).save(buf, format="PNG")  # 25 Mpx in a few KB
    bomb = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    refused(server, post("/v1/chat/completions", json=chat(bomb)), 400, "image_too_large")
    error = refused(
        server,
        post("/v1/chat/completions", json=chat("https://example.com/cat.png")),
        400,
        "invalid_image_url",
    )
    assert "data: URLs" in error["message"]
    error = refused(
        server,
        post("/v1/images/generations", json={"prompt": "a fox", "size": "512x512"}),
        400,
        "unsupported_size",
    )
    assert "512x512" in error["message"] and error["param"] == "size"
    refused(
        server,
        post("/v1/images/generations", json={"prompt": "a fox", "model": "dall-e-3"}),
        404,
        "model_not_found",
    )
    refused(
        server, post("/v1/images/generations", json={"prompt": "a fox", "steps": 3}), 400
    )  # a JanusFlow field
    refused(
        server, post("/v1/images/generations", json={"prompt": "a fox " * 5000}), 400, "invalid_input"
    )  # over the context
    refused(
        server, post("/v1/images/generations", json={"prompt": "a fox", "n": 5}), 400
    )  # over max-batch x 4
    refused(server, server.get("/v1/nothing", headers=AUTH), 404)
    refused(server, server.get("/v1/chat/completions", headers=AUTH), 405)
    assert (
        server.post(
            "/v1/chat/completions", headers=AUTH, json=chat(data_url(image_path("square0.png")))
        ).status_code
        == 200
    )


def test_a_full_queue_is_429_with_retry_after(server):
    body = {"prompt": "a fox", "n": 1, "seed": 1}
    results: dict[int, int] = {}

    def post(i):
        results[i] = server.post("/v1/images/generations", headers=AUTH, json=body).status_code

    running = threading.Thread(target=post, args=(0,))  # takes the one batch slot
    running.start()
    deadline = time.monotonic() + 60
    while server.metric("janus_active_images", AUTH) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    waiting = threading.Thread(target=post, args=(1,))  # fills the queue of one
    waiting.start()
    while server.metric("janus_queue_depth", AUTH) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    r = server.post("/v1/images/generations", headers=AUTH, json=body)
    refused(server, r, 429, "rate_limit_exceeded")
    assert int(r.headers["retry-after"]) >= 1
    running.join(300)
    waiting.join(300)
    assert results == {0: 200, 1: 200}


def test_deep_json_nesting_is_a_400_on_every_json_route(server):
    for path in ("/v1/chat/completions", "/v1/images/generations"):
        for raw in (b"[" * 100_000, b'{"a":' * 100_000, b'{"messages": ' + b"[" * 200 + b"]" * 200 + b"}"):
            error = refused(server, server.post(path, headers=AUTH, content=raw), 400, "invalid_json")
            assert "deep" in error["message"], error


def test_a_message_without_content_is_a_400_naming_it(server):
    for message in ({"role": "user", "content": None}, {"role": "user"}):
        error = refused(
            server, server.post("/v1/chat/completions", headers=AUTH, json={"messages": [message]}), 400
        )
        assert error["param"] == "messages[0].content", error


def test_an_answer_ending_mid_character_is_the_same_streamed_or_not(server):
    """test_text_ends.py's case (one token, a space and half an emoji) through the server."""
    body = chat(data_url(image_path("square0.png")))
    body["messages"][0]["content"][1]["text"] = "Describe this image in detail."
    body |= {"temperature": 1, "seed": 239, "max_tokens": 1}
    whole = server.post("/v1/chat/completions", headers=AUTH, json=body).json()
    pieces = []
    with httpx.stream(
        "POST", server.url + "/v1/chat/completions", headers=AUTH, json={**body, "stream": True}, timeout=120
    ) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                pieces += [c["delta"].get("content") or "" for c in json.loads(line[6:])["choices"]]
    assert whole["choices"][0]["message"]["content"] == "".join(pieces) == " \ufffd"


ACCESS = re.compile(r'127\.0\.0\.1:\d+ - "(\w+) (\S+) HTTP/1\.1" (\d{3}) (\d+\.\d{3})s')


def access_lines(server, needle: str, count: int = 1) -> list[tuple[str, str, int, float]]:
    """The access lines (method, target, status, seconds) whose target holds NEEDLE, once COUNT
    of them are in the server's log (bounded wait)."""
    deadline = time.monotonic() + 30
    while True:
        found = [m.groups() for m in map(ACCESS.fullmatch, "".join(server.log).splitlines()) if m]
        found = [(a, b, int(c), float(d)) for a, b, c, d in found if needle in b]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_one_access_line_per_request_and_a_stream_logs_when_it_ends(server):
    probe = uuid.uuid4().hex
    assert server.get(f"/health?probe={probe}").status_code == 200
    assert server.get(f"/v1/models?probe={probe}").status_code == 401  # no key
    assert server.get(f"/v1/models?probe={probe}&x=a%0Ab", headers=AUTH).status_code == 200
    lines = access_lines(server, probe, 3)
    assert [(m, s) for m, _, s, _ in lines] == [("GET", 200), ("GET", 401), ("GET", 200)], lines
    assert lines[0][1] == f"/health?probe={probe}" and lines[2][1].endswith("x=a%0Ab")  # no line break
    body = chat(data_url(image_path("square0.png"))) | {"max_tokens": 24, "stream": True}
    target = f"/v1/chat/completions?probe={probe}"
    with httpx.stream("POST", server.url + target, headers=AUTH, json=body, timeout=120) as r:
        events = r.iter_lines()
        next(events)  # the first event (the role) is sent before any token is made
        t0 = time.perf_counter()
        rest = list(events)
        span = time.perf_counter() - t0  # the 24 tokens' time, as the client saw it
    assert r.status_code == 200 and "data: [DONE]" in rest
    ((method, _, status, seconds),) = access_lines(server, target)
    # logged when the stream ended: a line written as the response started would say ~0 s
    assert (method, status) == ("POST", 200) and seconds >= span / 2, (seconds, span)
