"""What a scheduler is asked (requests), what it answers (events), and the checks made before
a request is queued. Pure data and validation: no model work, safe on any thread."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from janus_cli.errors import InputError
from janus_cli.pipelines.checks import problems
from janus_cli.pipelines.image_to_text import DescribeSettings
from janus_cli.pipelines.text_to_image import GenerateSettings, prompt_ids
from janus_cli.pipelines.text_to_image_flow import FlowSettings, flow_prompt_ids
from janus_cli.prompts import IMAGE_TAG, SYSTEM_PROMPT, understanding_ids


@dataclass(frozen=True)
class ImageRequest:
    prompt: str
    settings: GenerateSettings | FlowSettings  # GenerateSettings on "janus", FlowSettings on "janusflow"


@dataclass(frozen=True)
class TextRequest:
    """The assistant's next answer: user/assistant MESSAGES alternating, user first and last,
    with one `<image_placeholder>` per picture of IMAGES, in order."""

    messages: list[str]
    images: list[Any] = field(default_factory=list)  # PIL images
    settings: DescribeSettings = DescribeSettings()  # .question is unused
    system: str | None = None  # None: the default system prompt; "": none


@dataclass(frozen=True)
class ImageStep:
    index: int  # image of the request (0..n-1)
    step: int  # tokens (Janus) or Euler steps (JanusFlow) done
    steps: int


@dataclass(frozen=True, eq=False)
class ImageDone:
    index: int
    seed: int  # re-makes this image alone
    pixels: np.ndarray  # (H, W, 3) uint8


@dataclass(frozen=True)
class TextDelta:
    text: str  # new answer text (never a split multi-byte character)


@dataclass(frozen=True)
class TextDone:
    text: str
    tokens: int
    prompt_tokens: int
    finish_reason: Literal["stop", "length"]


@dataclass(frozen=True)
class Finished:
    """The last event of every request, exactly once."""

    error: str | None = None
    cancelled: bool = False


Event = ImageStep | ImageDone | TextDelta | TextDone | Finished


@dataclass(frozen=True)
class Checked:
    """A validated request: its ids, and for text the token budget of its answer."""

    kind: str  # "image", "flow" or "text"
    ids: list[int]
    max_tokens: int = 0


def check_request(session, request, has_vae: bool) -> Checked:
    """Raise InputError for a request SESSION cannot run; return its ids."""
    family = session.config.family
    if isinstance(request, TextRequest):
        return check_text(session, request)
    if not isinstance(request, ImageRequest):
        raise InputError(f"unknown request {type(request).__name__}")
    s = request.settings
    if not isinstance(s, GenerateSettings | FlowSettings):
        raise InputError(f"image settings must be GenerateSettings or FlowSettings, not {type(s).__name__}")
    for key, problem in problems(s.CHECKS, vars(s)):  # the checks every front end makes
        raise InputError(f"{key} {problem}")
    if not math.isfinite(s.cfg):
        raise InputError(f"cfg {s.cfg} is not a number")
    if family == "janusflow":
        if not isinstance(s, FlowSettings):
            raise InputError(
                f"{session.name} is a JanusFlow model: its images take FlowSettings (steps, noise)"
            )
        if not has_vae:
            raise InputError(f"{session.name}: JanusFlow images need the SDXL VAE, and none was loaded")
        return Checked("flow", flow_prompt_ids(session, request.prompt)[0])
    if not isinstance(s, GenerateSettings):
        raise InputError(
            f"{session.name} is a Janus model: its images take GenerateSettings, not FlowSettings"
        )
    return Checked("image", prompt_ids(session, request.prompt))


def check_sampling(temperature: float, top_p: float | None) -> None:
    if not (math.isfinite(temperature) and temperature >= 0):
        raise InputError(f"temperature is {temperature}: 0 (greedy) or more")
    if top_p is not None and not 0 < top_p <= 1:
        raise InputError(f"top_p is {top_p}: between 0 (excluded) and 1")


def check_text(session, r: TextRequest) -> Checked:
    """`image_to_text.reply`'s checks, and the answer's budget capped by the context."""
    if not r.messages or len(r.messages) % 2 == 0:
        raise InputError("a conversation alternates user and assistant turns, user first and last")
    tags = sum(m.count(IMAGE_TAG) for m in r.messages)
    if tags != len(r.images):
        raise InputError(f"the conversation has {tags} {IMAGE_TAG} tags for {len(r.images)} images")
    s = r.settings
    check_sampling(s.temperature, s.top_p)
    if s.max_tokens < 1:
        raise InputError(f"max_tokens is {s.max_tokens}: at least 1")
    system = SYSTEM_PROMPT if r.system is None else r.system
    ids = understanding_ids(session.tokenizer, list(r.messages), session.config.image_tokens, system)
    context = session.config.llm.context_length
    if context - len(ids) < 1:
        raise InputError(f"the conversation is {len(ids)} tokens, over the {context}-token context")
    return Checked("text", ids, min(s.max_tokens, context - len(ids)))
