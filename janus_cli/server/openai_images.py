"""POST /v1/images/generations: an OpenAI images body (plus our sampling fields) -> the
settings `janus generate` / `janus flow-generate` use, and each image back as a PNG carrying
its recipe, as `b64_json` or as a `url` served by this server.

Our fields sit in the same body (the openai client's `extra_body`): `cfg`, `temperature`
(0 = argmax), `top_k`, `top_p` for Janus / Janus-Pro; `cfg`, `steps`, `noise` for JanusFlow.
Their defaults are the commands' defaults. A field of the other family is a 400, so that a
setting is never silently ignored. Image k of a request with seed S is the image `janus
generate --seed S+k` makes (JanusFlow with noise "official": one draw of all n from S).
"""

from __future__ import annotations

import base64
import io
import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from janus_cli.server.errors import bad_request
from janus_cli.server.validate import number, optional

SIZE = "384x384"  # what every Janus model makes
JANUS_FIELDS = {"cfg": 5.0, "temperature": 1.0, "top_k": None, "top_p": None}  # `janus generate` defaults
FLOW_FIELDS = {"cfg": 2.0, "steps": 30, "noise": "per-image"}  # `janus flow-generate` defaults
MAX_STEPS = 1000
FILE_NAME = r"[A-Za-z0-9_-]{16,64}\.png"


@dataclass
class ImageCall:
    model: str | None
    prompt: str
    n: int
    seed: int
    url: bool  # response_format "url" (else b64_json)
    stream: bool
    options: dict  # the family's fields (JANUS_FIELDS or FLOW_FIELDS keys), filled with defaults


def parse_images(body: dict, family: str, max_n: int) -> ImageCall:
    """Validate BODY for a model of FAMILY ("janus" or "janusflow"); MAX_N caps n."""
    model = optional(body, "model", str)
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise bad_request("prompt: give a non-empty string", "prompt")
    n = number(body.get("n", 1) if body.get("n") is not None else 1, int, "n", low=1, high=max_n)
    size = body.get("size") or SIZE
    if size != SIZE:
        raise bad_request(
            f"size {size!r} is not supported: Janus models make {SIZE} images only",
            "size",
            "unsupported_size",
        )
    fmt = body.get("response_format") or "b64_json"
    if fmt not in ("b64_json", "url"):
        raise bad_request(f"response_format {fmt!r}: choose b64_json or url", "response_format")
    out = body.get("output_format") or "png"
    if out != "png":
        raise bad_request(f"output_format {out!r}: only png is made (it carries the recipe)", "output_format")
    seed = body.get("seed")
    seed = secrets.randbelow(2**31) if seed is None else number(seed, int, "seed", low=0, high=2**63 - 1)
    mine, other = (JANUS_FIELDS, FLOW_FIELDS) if family == "janus" else (FLOW_FIELDS, JANUS_FIELDS)
    for name in other.keys() - mine.keys():
        if body.get(name) is not None:
            raise bad_request(
                f"{name} is a {'JanusFlow' if family == 'janus' else 'Janus'} setting; the model is {family}",
                name,
            )
    options = {name: _option(name, body.get(name), default) for name, default in mine.items()}
    return ImageCall(model, prompt, n, seed, fmt == "url", bool(body.get("stream", False)), options)


def _option(name: str, value, default):
    if value is None:
        return default
    if name == "cfg":
        return number(value, float, name, low=0.0)
    if name == "temperature":
        return number(value, float, name, low=0.0)
    if name == "top_k":
        return number(value, int, name, low=1)
    if name == "top_p":
        p = number(value, float, name, low=0.0, high=1.0)
        if p <= 0:
            raise bad_request("top_p must be in (0, 1]", name)
        return p
    if name == "steps":
        return number(value, int, name, low=1, high=MAX_STEPS)
    if value not in ("per-image", "official"):  # noise
        raise bad_request(f"noise {value!r}: choose per-image or official", name)
    return value


def settings(call: ImageCall, family: str):
    """The pipeline settings of CALL (GenerateSettings or FlowSettings)."""
    if family == "janus":
        from janus_cli.pipelines.text_to_image import GenerateSettings

        return GenerateSettings(n=call.n, seed=call.seed, **call.options)
    from janus_cli.pipelines.text_to_image_flow import FlowSettings

    return FlowSettings(n=call.n, seed=call.seed, **call.options)


def record(call: ImageCall, base: dict, index: int, seed: int) -> dict:
    """The recipe of image INDEX, as `janus generate` records it (cli/image_run.py): the
    model's fields BASE, the settings, prompt, seed and index."""
    return {**base, **call.options, "prompt": call.prompt, "seed": seed, "index": index}


def png_bytes(pixels, metadata: dict[str, str]) -> bytes:
    """An (H, W, 3) uint8 image as PNG bytes with text chunks METADATA."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for k, v in metadata.items():
        info.add_itxt(k, v)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def write_file(folder: Path, data: bytes) -> str:
    """DATA written atomically (temp file + rename) under FOLDER with a fresh unguessable name
    (128 random bits); returns the name."""
    name = f"{secrets.token_urlsafe(16)}.png"
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, folder / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return name


def item(data: bytes, seed: int, url: str | None) -> dict:
    """One entry of the response's `data` (OpenAI's Image, plus the seed that re-makes it)."""
    out = {"url": url} if url is not None else {"b64_json": base64.b64encode(data).decode()}
    return {**out, "revised_prompt": None, "seed": seed}


def response(items: list[dict]) -> dict:
    return {"created": int(time.time()), "data": items, "output_format": "png", "size": SIZE}
