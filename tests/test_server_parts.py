"""The server's pure parts, in process: OpenAI bodies -> conversations and settings, the
security policy, PNG recipes. The real server is driven in test_server.py."""

from __future__ import annotations

import base64
import io
import json

import pytest
from conftest import image_path
from PIL import Image
from serve_helpers import data_url

from janus_cli.server.errors import ApiError
from janus_cli.server.openai_chat import MAX_PIXELS, parse_chat
from janus_cli.server.openai_images import parse_images, png_bytes, record
from janus_cli.server.security import Policy, host_name

IMG = data_url(image_path("square0.png"))


def user(*parts):
    return {"role": "user", "content": list(parts)}


def image_part(url=IMG):
    return {"type": "image_url", "image_url": {"url": url}}


def text_part(text):
    return {"type": "text", "text": text}


def refused(body, status=400) -> ApiError:
    with pytest.raises(ApiError) as e:
        parse_chat(body)
    assert e.value.status == status
    return e.value


def test_an_image_then_a_question_is_the_describe_prompt():
    from janus_cli.pipelines.image_to_text import conversation

    call = parse_chat({"messages": [user(image_part(), text_part("Describe this image in detail."))]})
    assert call.messages == [conversation("Describe this image in detail.", 1)]
    assert len(call.images) == 1 and call.images[0].mode == "RGB"
    assert call.temperature == 0.0 and call.system is None and call.max_tokens == 512


def test_parts_keep_their_order_and_turns_alternate():
    body = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            user(text_part("Compare"), image_part(), image_part(), text_part("and say which is redder.")),
            {"role": "assistant", "content": "The first."},
            {"role": "user", "content": "Why?"},
            {"role": "user", "content": [text_part("Be precise.")]},
        ],
        "max_completion_tokens": 7,
        "temperature": 0.5,
        "top_p": 0.9,
        "seed": 3,
    }
    call = parse_chat(body)
    tag = "<image_placeholder>"
    assert call.messages == [
        f"Compare\n{tag}{tag}\nand say which is redder.",
        "The first.",
        "Why?\nBe precise.",
    ]
    assert call.system == "Be brief." and len(call.images) == 2
    assert (call.max_tokens, call.temperature, call.top_p, call.seed) == (7, 0.5, 0.9, 3)


@pytest.mark.parametrize(
    "body, param",
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, "messages"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [user(image_part("https://example.com/a.png"))]}, "messages[0].content[0].image_url"),
        ({"messages": [user(image_part("data:image/png;base64,%%%"))]}, "messages[0].content[0].image_url"),
        ({"messages": [user(text_part("a <image_placeholder> tag"))]}, "messages[0].content[0]"),
        ({"messages": [user(text_part("hi"))], "temperature": -1}, "temperature"),
        ({"messages": [user(text_part("hi"))], "max_tokens": 0}, "max_tokens"),
        ({"messages": [user(text_part("hi"))], "top_p": 0}, "top_p"),
        ({"messages": [user(text_part("hi"))], "n": 2}, "n"),
        ({"messages": [{"role": "user", "content": None}]}, "messages[0].content"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": [{"role": "system", "content": None}, user()]}, "messages[0].content"),
        ({"messages": [{"role": "developer", "content": None}, user()]}, "messages[0].content"),
        ({"messages": [user(), {"role": "assistant", "content": None}, user()]}, "messages[1].content"),
    ],
)
def test_bad_chat_bodies_name_their_field(body, param):
    assert refused(body).param == param


def test_content_may_be_null_only_in_an_assistant_message_that_calls_tools():
    """OpenAI's own rule (its API reference: an assistant's content is "required unless
    tool_calls or function_call is specified"; every other role's is required)."""
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    assistant = {"role": "assistant", "content": None, "tool_calls": [call]}
    assert parse_chat({"messages": [user(text_part("hi")), assistant, user(text_part("and?"))]}).messages == [
        "hi",
        "",
        "and?",
    ]
    error = refused({"messages": [{"role": "user", "content": None}]})
    assert error.message == "messages[0].content: a user message needs a string or a list of parts, got null"


def test_a_body_is_a_json_object_nested_at_most_max_depth():
    from janus_cli.server.validate import MAX_DEPTH, json_object

    assert json_object(b'{"a": ' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}")
    for raw in (
        b'{"a": ' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}",  # parses, but one level too deep
        b"[" * 100_000,  # the parser's RecursionError
        b'{"a":' * 100_000,
    ):
        with pytest.raises(ApiError) as e:
            json_object(raw)
        assert (e.value.status, e.value.code) == (400, "invalid_json") and "deep" in e.value.message


def test_http_urls_are_refused_with_a_hint():
    e = refused({"messages": [user(image_part("http://example.com/cat.jpg"))]})
    assert "only base64 data: URLs" in e.message


def test_a_decompression_bomb_is_refused_from_its_header():
    side = int(MAX_PIXELS**0.5) + 16
    buf = io.BytesIO()
    Image.new("1", (side, side)).save(buf, format="PNG")  # a few KB, side^2 pixels
    e = refused(
        {"messages": [user(image_part("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()))]}
    )
    assert e.code == "image_too_large"


def test_only_png_jpeg_and_webp():
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="GIF")
    e = refused(
        {"messages": [user(image_part("data:image/gif;base64," + base64.b64encode(buf.getvalue()).decode()))]}
    )
    assert "GIF" in e.message


def test_image_bodies():
    call = parse_images({"prompt": "a fox", "n": 2, "seed": 4, "cfg": 3, "top_k": 100}, "janus", max_n=8)
    assert (call.n, call.seed, call.options) == (
        2,
        4,
        {"cfg": 3.0, "temperature": 1.0, "top_k": 100, "top_p": None},
    )
    flow = parse_images({"prompt": "a fox", "steps": 5, "noise": "official"}, "janusflow", max_n=8)
    assert flow.options == {"cfg": 2.0, "steps": 5, "noise": "official"} and 0 <= flow.seed < 2**31
    for body, param in [
        ({"prompt": "x", "size": "1024x1024"}, "size"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x", "n": 9}, "n"),
        ({"prompt": "x", "steps": 5}, "steps"),
        ({"prompt": "x", "response_format": "gif"}, "response_format"),
    ]:
        with pytest.raises(ApiError) as e:
            parse_images(body, "janus", max_n=8)
        assert (e.value.status, e.value.param) == (400, param)
        if param == "size":
            assert "1024x1024" in e.value.message


def test_png_carries_the_recipe():
    import numpy as np

    from janus_cli.imageio import png_metadata

    call = parse_images({"prompt": "a fox", "seed": 7, "temperature": 0}, "janus", max_n=1)
    rec = record(call, {"model": "janus-pro-1b", "dtype": "float32"}, 0, 7)
    img = Image.open(io.BytesIO(png_bytes(np.zeros((4, 4, 3), np.uint8), png_metadata(rec))))
    meta = json.loads(img.info["janus-cli"])
    assert meta == {
        "model": "janus-pro-1b",
        "dtype": "float32",
        "cfg": 5.0,
        "temperature": 0.0,
        "top_k": None,
        "top_p": None,
        "prompt": "a fox",
        "seed": 7,
        "index": 0,
    }
    assert img.info["seed"] == "7"


def test_host_policy():
    p = Policy(bound_host="127.0.0.1", allowed_hosts=frozenset({"box.lan"}))
    for ok in ["localhost:8000", "127.0.0.1:8000", "[::1]:8000", "10.0.0.5", "app.localhost", "BOX.lan:80"]:
        assert p.host_ok(ok), ok
    for bad in ["evil.example", "evil.example:8000", "", None, "localhost.evil.example"]:
        assert not p.host_ok(bad), bad
    assert host_name("[::1]:8000") == "::1" and host_name("Example.COM:1") == "example.com"
    assert Policy(allowed_hosts=frozenset({"*"})).host_ok("anything.example")


def test_key_policy():
    p = Policy(api_key="s3cret")
    assert p.key_ok("Bearer s3cret") and p.key_ok("bearer s3cret")
    assert (
        not p.key_ok("Bearer s3cre")
        and not p.key_ok(None)
        and not p.key_ok("Basic s3cret")
        and not p.key_ok("s3cret")
    )
    assert Policy().key_ok(None)


def test_without_the_extra_one_line_says_what_to_install(tmp_path):
    import os

    from conftest import assert_one_line_error, run_janus

    (tmp_path / "starlette").mkdir()
    (tmp_path / "starlette" / "__init__.py").write_text("raise ImportError('not installed')\n")
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    r = run_janus("serve", "-m", "janus-pro-1b", env={"PYTHONPATH": path})
    assert_one_line_error(r, "pip install 'janus-cli[serve]'")


def test_a_public_bind_without_a_key_warns_before_anything_loads():
    from conftest import run_janus

    r = run_janus("serve", "--host", "0.0.0.0", "-m", "/nonexistent/model")
    assert r.returncode != 0 and r.stdout == ""
    warning, error = r.stderr.strip().splitlines()
    assert warning.startswith("warning: --host 0.0.0.0 without --api-key") and error.startswith("error: ")


def test_two_models_may_not_share_a_name(tmp_path):
    from conftest import assert_one_line_error, checkpoint_dir, run_janus

    tiny = str(checkpoint_dir("janus-pro-1b-tiny"))
    assert_one_line_error(run_janus("serve", "-m", tiny, "-m", tiny), "one name")


def test_the_benchmark_imports_and_its_mixed_load_is_a_fifth_malformed():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / "serve.py"
    spec = importlib.util.spec_from_file_location("benchmark_serve", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert callable(bench.main)
    requests = bench.mixed_requests(100)
    assert len(requests) == 102 and sum(r[3] for r in requests) == 20


@pytest.mark.parametrize(
    "flags, logged",
    [({}, True), ({"quiet": True}, False), ({"no_access_log": True}, False)],
)
def test_the_access_log_is_on_unless_quiet_or_asked_off(monkeypatch, flags, logged):
    """The flags reach the app (the lines themselves: test_server_security.py, and none with
    --no-access-log in test_server.py)."""
    import importlib

    command = importlib.import_module("janus_cli.cli.serve")  # the module; cli exports the function
    given = []
    monkeypatch.setattr(command, "_open", lambda *a: object())
    monkeypatch.setattr(command, "_listen", lambda served, host, port, options: given.append(options))
    command.serve(model=["m"], **flags)
    assert [o.access_log for o in given] == [logged]


def test_an_access_line_escapes_its_target():
    from janus_cli.server.access_log import line

    scope = {"client": ("127.0.0.1", 5), "method": "GET", "path": "/a\nb c", "query_string": b"x=1\r\n2"}
    assert line(scope, 404, 0.01234) == '127.0.0.1:5 - "GET /a%0Ab%20c?x=1%0D%0A2 HTTP/1.1" 404 0.012s'
