"""POST /v1/chat/completions: an OpenAI chat body -> the conversation `janus chat` builds, and
the answer back in OpenAI's `chat.completion` / `chat.completion.chunk` shapes.

Content parts keep their order: an image part becomes `<image_placeholder>` where it stands,
and neighbouring parts are joined with "\\n" except between two images. So an image followed
by a question is exactly `<image_placeholder>\\n` + question, the prompt `janus describe` and
`janus chat` build (pipelines/image_to_text.conversation). Consecutive messages of one role
merge (joined with "\\n"); system (and "developer") messages replace the default system prompt.

`temperature` left out means 0, greedy: that is `janus describe`'s default and the official
inference's, and makes an answer reproducible; OpenAI's own default is 1, so send it to sample.
"""

from __future__ import annotations

import base64
import binascii
import io
import time
import uuid
from dataclasses import dataclass

from janus_cli.server.errors import bad_request
from janus_cli.server.validate import number, optional

IMAGE_TAG = "<image_placeholder>"  # janus_cli.prompts.IMAGE_TAG (not imported: that pulls the tokenizer)
MAX_PIXELS = 4096 * 4096  # the models see 384 x 384; more is a decompression bomb or a mistake
FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
DEFAULT_MAX_TOKENS = 512  # `janus describe` / `janus chat` default


@dataclass
class ChatCall:
    """A parsed chat request."""

    model: str | None
    messages: list[str]  # user, assistant, ..., user: each image an IMAGE_TAG in place
    images: list  # PIL images, in tag order
    system: str | None  # None: the model's default system prompt
    max_tokens: int
    temperature: float
    top_p: float | None
    seed: int
    stream: bool
    include_usage: bool


def parse_chat(body: dict) -> ChatCall:
    """Validate BODY (a decoded JSON object); ApiError 400 naming the field on any problem."""
    if body.get("n", 1) not in (1, None):
        raise bad_request("n: only 1 choice per request is supported", "n")
    if body.get("logprobs"):
        raise bad_request("logprobs are not supported", "logprobs")
    if body.get("tools"):
        raise bad_request("tools are not supported", "tools")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise bad_request("messages: give a non-empty list of messages", "messages")
    system: list[str] = []
    turns: list[tuple[str, str]] = []  # (role, text) with roles merged
    images: list = []
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise bad_request(f"{where}: a message is an object with role and content", where)
        role = m.get("role")
        if role not in ("system", "developer", "user", "assistant"):
            raise bad_request(
                f"{where}.role: {role!r} is not one of system, developer, user, assistant", f"{where}.role"
            )
        content = m.get("content")
        if content is None and not (role == "assistant" and (m.get("tool_calls") or m.get("function_call"))):
            # OpenAI's rule: only an assistant message that calls tools may go without content
            got = "null" if "content" in m else "no content"
            raise bad_request(
                f"{where}.content: a {role} message needs a string or a list of parts, got {got}",
                f"{where}.content",
            )
        text, found = _content(content, f"{where}.content", allow_images=role == "user")
        images += found
        if role in ("system", "developer"):
            system.append(text)
        elif turns and turns[-1][0] == role:
            turns[-1] = (role, turns[-1][1] + "\n" + text)
        else:
            turns.append((role, text))
    if not turns or turns[0][0] != "user" or turns[-1][0] != "user":
        raise bad_request("messages: the conversation must start and end with a user message", "messages")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    options = body.get("stream_options") or {}
    return ChatCall(
        model=optional(body, "model", str),
        messages=[text for _, text in turns],
        images=images,
        system="\n".join(system) if system else None,
        max_tokens=DEFAULT_MAX_TOKENS if max_tokens is None else number(max_tokens, int, "max_tokens", low=1),
        temperature=number(body.get("temperature", 0.0) or 0.0, float, "temperature", low=0.0, high=2.0),
        top_p=_top_p(body.get("top_p")),
        seed=number(body.get("seed", 0) or 0, int, "seed", low=0),
        stream=bool(body.get("stream", False)),
        include_usage=bool(isinstance(options, dict) and options.get("include_usage")),
    )


def _top_p(value) -> float | None:
    if value is None:
        return None
    p = number(value, float, "top_p", low=0.0, high=1.0)
    if p <= 0:
        raise bad_request("top_p must be in (0, 1]", "top_p")
    return None if p == 1 else p


def _content(content, where: str, allow_images: bool) -> tuple[str, list]:
    """A message's content (a string or a list of parts) as text with image tags, and its images."""
    if isinstance(content, str):
        if IMAGE_TAG in content:
            raise bad_request(f"{where}: send images as image_url parts, not {IMAGE_TAG}", where)
        return content, []
    if content is None:  # an assistant's tool call (parse_chat refuses any other)
        return "", []
    if not isinstance(content, list):
        raise bad_request(f"{where}: content is a string or a list of parts", where)
    pieces: list[tuple[bool, str]] = []  # (is image, text)
    images = []
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            if IMAGE_TAG in part["text"]:
                raise bad_request(f"{at}: send images as image_url parts, not {IMAGE_TAG}", at)
            pieces.append((False, part["text"]))
        elif kind == "image_url":
            if not allow_images:
                raise bad_request(f"{at}: only user messages may hold images", at)
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            images.append(decode_data_url(url, f"{at}.image_url"))
            pieces.append((True, IMAGE_TAG))
        else:
            raise bad_request(
                f"{at}: a part is {{'type': 'text', 'text': ...}} or {{'type': 'image_url', 'image_url': "
                f"{{'url': ...}}}}",
                at,
            )
    text = ""
    for k, (is_image, piece) in enumerate(pieces):
        text += ("" if k == 0 or (is_image and pieces[k - 1][0]) else "\n") + piece
    return text, images


def decode_data_url(url, where: str):
    """A base64 `data:` URL of a PNG, JPEG or WebP -> RGB PIL image, refusing any other URL,
    format, a corrupt file and more than MAX_PIXELS pixels (checked on the header, before
    the pixels are decoded)."""
    from PIL import Image

    from janus_cli.errors import InputError
    from janus_cli.imageio import load_image

    if not isinstance(url, str) or not url.startswith("data:"):
        shown = url[:60] if isinstance(url, str) else type(url).__name__
        message = f"{where}: only base64 data: URLs are accepted (data:image/png;base64,...), not {shown}"
        raise bad_request(message, where, "invalid_image_url")
    head, _, data = url.partition(",")
    if not head.endswith(";base64"):
        raise bad_request(
            f"{where}: the data: URL must be base64 (data:image/png;base64,...)", where, "invalid_image_url"
        )
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(f"{where}: the data: URL is not valid base64", where, "invalid_image_url") from None
    try:
        with Image.open(io.BytesIO(raw)) as probe:  # reads the header only
            fmt, (w, h) = probe.format, probe.size
    except (Image.DecompressionBombError, Image.UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise bad_request(f"{where}: not a PNG, JPEG or WebP image", where, "invalid_image") from None
    if fmt not in FORMATS:
        raise bad_request(
            f"{where}: {fmt} images are not accepted; send PNG, JPEG or WebP", where, "invalid_image"
        )
    if w * h > MAX_PIXELS:
        raise bad_request(
            f"{where}: the image is {w}x{h}, over {MAX_PIXELS:,} pixels", where, "image_too_large"
        )
    try:
        return load_image(raw)
    except InputError as e:
        raise bad_request(f"{where}: {str(e).removeprefix('<stdin>: ')}", where, "invalid_image") from None


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def completion(cid: str, model: str, text: str, finish: str, prompt_tokens: int, tokens: int) -> dict:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": usage(prompt_tokens, tokens),
        "system_fingerprint": None,
    }


def chunk(
    cid: str, model: str, created: int, delta: dict | None, finish: str | None = None, use: dict | None = None
) -> dict:
    """One `chat.completion.chunk`; DELTA None gives the usage-only chunk (no choices)."""
    choices = (
        [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    )
    out = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}
    out |= {"system_fingerprint": None, "choices": choices}
    if use is not None:
        out["usage"] = use
    return out


def usage(prompt_tokens: int, tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": tokens,
        "total_tokens": prompt_tokens + tokens,
    }
