"""The official prompt templates (DeepSeek `sft_format`), image-slot expansion, CFG rows."""

from __future__ import annotations

from janus_cli.tokenizer import Tokenizer

SYSTEM_PROMPT = (
    "You are a helpful language and vision assistant. You are able to understand the visual "
    "content that the user provides, and assist the user with a variety of tasks using natural "
    "language."
)
IMAGE_TAG = "<image_placeholder>"
EOS_TEXT = "<｜end▁of▁sentence｜>"


def render(turns: list[tuple[str, str]], system: str) -> str:
    """DeepSeek separator style: `role: content` + "\\n\\n" after user turns, EOS after replies.

    An empty content renders as `role:` (the assistant turn the model continues).
    """
    out = system + "\n\n" if system else ""
    for i, (role, content) in enumerate(turns):
        content = content.strip()
        out += f"{role}: {content}" + ("\n\n" if i % 2 == 0 else EOS_TEXT) if content else f"{role}:"
    return out.strip()


def understanding_ids(
    tok: Tokenizer, messages: list[str], num_image_tokens: int, system: str = SYSTEM_PROMPT
) -> list[int]:
    """Ids of a conversation whose user/assistant MESSAGES alternate (user first, the last
    user message unanswered), with every `<image_placeholder>` expanded to
    `<begin_of_image>` + N image slots + `<end_of_image>`.
    """
    user, assistant = tok.roles
    turns = [(user if i % 2 == 0 else assistant, m) for i, m in enumerate(messages)] + [(assistant, "")]
    s = tok.special
    out: list[int] = []
    for i in tok.encode(render(turns, system)):
        out.extend([s.boi, *[s.image] * num_image_tokens, s.eoi] if i == s.image else [i])
    return out


def generation_ids(tok: Tokenizer, prompt: str, tag: int | None = None) -> list[int]:
    """`<User>: prompt\\n\\n<Assistant>:` with no system prompt, then the generation tag
    (`<begin_of_image>` unless TAG names another id)."""
    user, assistant = tok.roles
    ids = tok.encode(render([(user, prompt), (assistant, "")], system=""))
    return [*ids, tok.special.boi if tag is None else tag]


def make_uncond_ids(ids: list[int], pad_id: int) -> list[int]:
    """The unconditional CFG prompt: everything between BOS and the final tag becomes pad.

    BOS and the last token stay; the pads are attended (not masked), as in the official code.
    """
    return [ids[0], *[pad_id] * (len(ids) - 2), ids[-1]]
