"""Understanding: images + question -> SigLIP -> LLM -> streamed answer (all four models)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from PIL import Image

from janus_cli.errors import InputError
from janus_cli.imageio import preprocess
from janus_cli.pipelines.batching import batches, seed_for
from janus_cli.pipelines.events import TextDelta, TextReady
from janus_cli.pipelines.session import Session
from janus_cli.prompts import IMAGE_TAG, understanding_ids
from janus_cli.runtime import make_generator
from janus_cli.sampling.logits import make_sampler
from janus_cli.sampling.text import generate_text
from janus_cli.tokenizer import Detokenizer


@dataclass(frozen=True)
class DescribeSettings:
    question: str = "Describe this image in detail."
    max_tokens: int = 512
    temperature: float = 0.0
    top_p: float | None = None
    seed: int = 0
    batch_size: int = 4


def conversation(question: str, n_images: int) -> str:
    """The user message: QUESTION, with one image tag per image put in front unless the
    question already places its own tags."""
    if IMAGE_TAG in question:
        if question.count(IMAGE_TAG) != n_images:
            raise InputError(
                f"the question has {question.count(IMAGE_TAG)} {IMAGE_TAG} tags for {n_images} images"
            )
        return question
    return IMAGE_TAG * n_images + "\n" + question


def describe(
    session: Session, groups: list[list[Image.Image]], s: DescribeSettings
) -> Iterator[TextDelta | TextReady]:
    """Answer S.question about each group of images (a group shares one conversation).

    Groups whose prompts have the same length run together, S.batch_size at a time. Answers
    are streamed as TextDelta when a batch holds a single row.
    """
    tok = session.tokenizer
    n_tokens = session.config.image_tokens
    prompts = [understanding_ids(tok, [conversation(s.question, len(g))], n_tokens) for g in groups]
    room = session.config.llm.context_length - max(len(p) for p in prompts)
    if room < 1:
        raise InputError(
            f"the prompt is {max(len(p) for p in prompts)} tokens, over the "
            f"{session.config.llm.context_length}-token context"
        )
    max_tokens = min(s.max_tokens, room)
    order = sorted(range(len(groups)), key=lambda i: len(prompts[i]))
    for batch in batches(order, lambda i: len(prompts[i]), s.batch_size):
        yield from _answer(
            session, [prompts[i] for i in batch], [groups[i] for i in batch], batch, s, max_tokens
        )


def reply(
    session: Session, messages: list[str], images: list[Image.Image], s: DescribeSettings
) -> Iterator[TextDelta | TextReady]:
    """The assistant's next answer in a conversation (index 0), streamed.

    Args:
        messages: user and assistant turns, alternating, user first and last; each image of
            the conversation is an `<image_placeholder>` in some user turn.
        images: the pictures of those tags, in order.
        s: S.question is unused; S.seed seeds this answer.
    """
    prompt = understanding_ids(session.tokenizer, messages, session.config.image_tokens)
    tags = sum(m.count(IMAGE_TAG) for m in messages)
    if tags != len(images):
        raise InputError(f"the conversation has {tags} {IMAGE_TAG} tags for {len(images)} images")
    room = session.config.llm.context_length - len(prompt)
    if room < 1:
        raise InputError(
            f"the conversation is {len(prompt)} tokens, over the "
            f"{session.config.llm.context_length}-token context"
        )
    yield from _answer(session, [prompt], [images], [0], s, min(s.max_tokens, room))


def _answer(
    session: Session,
    prompts: list[list[int]],
    groups: list[list[Image.Image]],
    indices: list[int],
    s: DescribeSettings,
    max_tokens: int,
):
    """Answer equal-length PROMPTS (one row each) about their image GROUPS; row r is answer
    INDICES[r], seeded S.seed + INDICES[r]. A single row streams TextDelta events."""
    tok, model = session.tokenizer, session.model
    ids = torch.tensor(prompts, device=session.device)  # (B, T)
    pixels = [preprocess(img, session.preprocess) for g in groups for img in g]
    with torch.inference_mode():
        pixels = torch.stack(pixels).to(session.device) if pixels else None  # (images, 3, H, W)
        embeds = model.embed_prompt(ids, pixels, model.image_slots(ids, tok.special))
    sampler = make_sampler(
        s.temperature, None, s.top_p, [make_generator(seed_for(s.seed, i)) for i in indices]
    )
    answers: list[list[int]] = [[] for _ in indices]
    finished = [False] * len(indices)
    stream = Detokenizer(tok) if len(indices) == 1 else None
    for step_ids in generate_text(model.language_model, embeds, max_tokens, sampler, tok.special.eos):
        for row, t in enumerate(step_ids.tolist()):
            finished[row] = finished[row] or t == tok.special.eos
            if not finished[row]:
                answers[row].append(t)
        if stream is not None and (piece := stream.step(answers[0])):
            yield TextDelta(indices[0], piece)
    if stream is not None and (piece := stream.flush(answers[0])):
        yield TextDelta(indices[0], piece)
    for row, i in enumerate(indices):
        yield TextReady(i, tok.decode(answers[row]), len(answers[row]))
