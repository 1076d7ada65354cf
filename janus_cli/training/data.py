"""Training data: records read from a folder or a JSONL file, checked up front, made into
token sequences with the inference prompt code (prompts.py), so training and inference cannot
drift apart.

A folder holds images with same-name `.txt` captions: the prompt (generate) or the answer to
`janus describe`'s default question (describe). A JSONL file holds one object a line:
generate `{"image", "prompt"}`; describe `{"image", "question", "answer"}`, or a chat as
`{"messages": [{"role": "user", ...}, {"role": "assistant", ...}], "images": [...]}` (ms-swift's
form, `<image>` marking the picture) or with OpenAI content parts (`{"type": "image_url",
"image_url": {"url": PATH}}`). Relative image paths are relative to the JSONL file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from janus_cli.errors import InputError
from janus_cli.prompts import IMAGE_TAG, make_uncond_ids, understanding_ids

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
TASKS = ("generate", "describe")


@dataclass(frozen=True)
class Record:
    where: str  # how an error names it: "data.jsonl line 3" or the image's path
    image: Path
    text: str  # generate: the prompt; describe: the question
    answer: str = ""  # describe only


@dataclass(frozen=True)
class GenerateExample:
    prompt: list[int]  # generation_ids: the prompt up to <begin_of_image>
    uncond: list[int]  # make_uncond_ids of it: what prompt dropout trains on
    codes: object  # (576,) int64 tensor: the image's VQ codes


@dataclass(frozen=True)
class DescribeExample:
    ids: list[int]  # the conversation with the answer and its EOS
    answer_from: int  # index of the answer's first token in IDS
    image: int  # index of the image's features


def read_records(path: Path, task: str, question: str) -> list[Record]:
    """The records of PATH (a folder or a .jsonl file) for TASK; describe's folder captions
    answer QUESTION. Raises InputError naming the first malformed record."""
    path = Path(path)
    if task not in TASKS:
        raise InputError(f"--task {task}: choose generate or describe")
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise InputError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in the folder")
        return [_folder_record(p, task, question) for p in images]
    if not path.is_file():
        raise InputError(f"{path}: no such folder or file")
    records = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read ({e})") from None
    for n, line in enumerate(lines, 1):
        if line.strip():
            records.append(_jsonl_record(line, f"{path.name} line {n}", path.parent, task))
    if not records:
        raise InputError(f"{path}: no records")
    return records


def _folder_record(image: Path, task: str, question: str) -> Record:
    caption = image.with_suffix(".txt")
    try:
        text = caption.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        text = ""  # reported as an empty caption by check_record
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{caption}: cannot read ({e})") from None
    if task == "generate":
        return Record(str(image), image, text)
    return Record(str(image), image, question, text)


def _jsonl_record(line: str, where: str, base: Path, task: str) -> Record:
    try:
        obj = json.loads(line)
    except ValueError as e:
        raise InputError(f"{where}: not JSON ({e})") from None
    if not isinstance(obj, dict):
        raise InputError(f"{where}: not a JSON object")
    if "messages" in obj:
        if task != "describe":
            raise InputError(f"{where}: `messages` records are for --task describe")
        return _chat_record(obj, where, base)
    keys = ("image", "prompt") if task == "generate" else ("image", "question", "answer")
    missing = [k for k in keys if not isinstance(obj.get(k), str)]
    if missing:
        raise InputError(f"{where}: needs {', '.join(keys)} (strings); {', '.join(missing)} missing")
    image = base / obj["image"]
    if task == "generate":
        return Record(where, image, obj["prompt"].strip())
    return Record(where, image, obj["question"].strip(), obj["answer"].strip())


def _chat_record(obj: dict, where: str, base: Path) -> Record:
    """One user turn with one image, then one assistant turn."""
    messages = obj["messages"]
    if not isinstance(messages, list) or [
        m.get("role") if isinstance(m, dict) else None for m in messages
    ] != [
        "user",
        "assistant",
    ]:
        raise InputError(f"{where}: `messages` must be one user turn, then one assistant turn")
    images = list(obj.get("images") or [])
    texts = []
    for part in _parts(messages[0].get("content"), where):
        if part.get("type") == "text":
            texts.append(str(part.get("text", "")))
        elif part.get("type") in ("image_url", "image"):
            url = (
                part.get("image_url", {}).get("url") if part.get("type") == "image_url" else part.get("image")
            )
            images.append(url)
    question = "".join(texts).replace("<image>", "").replace(IMAGE_TAG, "").strip()
    answer = "".join(str(p.get("text", "")) for p in _parts(messages[1].get("content"), where)).strip()
    if len(images) != 1 or not isinstance(images[0], str):
        raise InputError(f"{where}: needs exactly one image (`images` or an image part), has {len(images)}")
    return Record(where, base / images[0].removeprefix("file://"), question, answer)


def _parts(content, where: str) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        return content
    raise InputError(f"{where}: a message's content must be a string or a list of parts")


def check_record(
    record: Record, task: str, load: Callable[[Path], object], fits: Callable[[Record], str]
) -> None:
    """Raise InputError (naming the record) for an unreadable image, an empty text, or a
    sequence over the context (FITS returns the reason, or "")."""
    name = record.where if record.where == str(record.image) else f"{record.where} ({record.image})"
    if task == "generate" and not record.text:
        raise InputError(f"{name}: empty caption")
    if task == "describe" and not record.answer:
        raise InputError(f"{name}: empty answer")
    try:
        load(record.image)
    except InputError as e:
        message = str(e).removeprefix(f"{record.image}: ")
        raise InputError(f"{name}: {message}") from None
    reason = fits(record)
    if reason:
        raise InputError(f"{name}: {reason}")


def checked(records: list[Record], task: str, load, fits, keep_going: bool) -> tuple[list[Record], list[str]]:
    """The records that pass check_record, and the messages of those skipped (KEEP_GOING);
    without KEEP_GOING the first failure raises."""
    kept, skipped = [], []
    for record in records:
        try:
            check_record(record, task, load, fits)
            kept.append(record)
        except InputError as e:
            if not keep_going:
                raise
            skipped.append(str(e))
    return kept, skipped


def describe_ids(tok, question: str, answer: str, image_tokens: int) -> tuple[list[int], int]:
    """The conversation of one image, QUESTION and ANSWER, as `janus describe` and `janus chat`
    render it, and where the answer starts.

    The prompt is exactly describe's (understanding_ids of `conversation`); the answer is taken
    from the same template with the answer in place, as chat renders an earlier reply, up to and
    including its EOS.
    """
    from janus_cli.pipelines.image_to_text import conversation

    user = conversation(question, 1)
    prompt = understanding_ids(tok, [user], image_tokens)
    full = understanding_ids(tok, [user, answer], image_tokens)
    if full[: len(prompt)] != prompt or tok.special.eos not in full[len(prompt) :]:
        raise InputError(f"the answer {answer[:40]!r} does not tokenize apart from its prompt")
    end = full.index(tok.special.eos, len(prompt)) + 1
    return full[:end], len(prompt)


def generate_example(prompt: list[int], pad: int, codes) -> GenerateExample:
    return GenerateExample(prompt, make_uncond_ids(prompt, pad), codes)
