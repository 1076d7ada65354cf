"""The image commands' work list: prompts (argument, stdin, or a prompts file with per-line
overrides) become `ImageJob`s, each a prompt with its image count, seed and settings."""

from __future__ import annotations

import json
from pathlib import Path

from janus_cli.cli import console, tables
from janus_cli.errors import InputError
from janus_cli.pipelines.batching import ImageJob
from janus_cli.pipelines.checks import problems


def read_prompts(prompt: str | None, prompts_file: str | None) -> list[dict]:
    """One dict per prompt: {"prompt": ...} from the argument or stdin (`-`), or the lines of
    PROMPTS_FILE (text, or JSON objects with overrides); refuses empty prompts."""
    if (prompt is None) == (prompts_file is None):
        raise InputError(
            "give a prompt (or - for stdin) or --prompts-file, not both"
            if prompt
            else "missing prompt: give PROMPT or --prompts-file"
        )
    lines = (
        [{"prompt": p} for p in console.read_lines(prompt)]
        if prompt is not None
        else read_prompts_file(prompts_file)
    )
    if not lines or any(not isinstance(d.get("prompt"), str) or not d["prompt"].strip() for d in lines):
        raise InputError("empty prompt")
    return lines


def read_prompts_file(path: str) -> list[dict]:
    """Non-empty lines of PATH: a line starting with `{` is a JSON object, any other is a prompt;
    or the rows of a Parquet table with a `prompt` column."""
    if path.lower().endswith(".parquet"):
        return tables.table_prompts(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read ({e})") from None
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if not line.startswith("{"):
            lines.append({"prompt": line})
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{number}: not valid JSON ({e.msg})") from None
        if not isinstance(doc, dict) or "prompt" not in doc:
            raise InputError(f'{path}:{number}: a JSON line needs a "prompt"')
        lines.append({**doc, "_line": f"{path}:{number}"})
    return lines


def make_jobs(
    lines: list[dict], settings: type, defaults: dict, overridable: tuple[str, ...], first: int = 0
) -> list[ImageJob]:
    """Jobs from prompt LINES, with SETTINGS (GenerateSettings or FlowSettings) made from
    DEFAULTS and each line's overrides of the keys OVERRIDABLE, each checked by SETTINGS.CHECKS.
    Run indices start at FIRST and continue across jobs."""
    jobs = []
    for line in lines:
        where = line.get("_line", "prompt")
        allowed = ("prompt", *overridable)
        unknown = sorted(set(line) - {*allowed, "_line"})
        if unknown:
            raise InputError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(allowed)})")
        overrides = {k: v for k, v in line.items() if k in overridable}
        for key, problem in problems(settings.CHECKS, overrides):
            raise InputError(f"{where}: {key!r} {problem}")
        job = ImageJob(line["prompt"], settings(**{**defaults, **overrides}), first)
        jobs.append(job)
        first += job.n
    return jobs


def recorded_seed(lines: list[dict], jobs: list[ImageJob], records: list[dict]) -> int | None:
    """The run seed of the run that wrote RECORDS, for --resume without --seed: read off an
    image whose prompt line sets no seed of its own (JOBS are LINES' jobs, one per line)."""
    for r in records:
        index, seed = r.get("index"), r.get("seed")
        if not isinstance(index, int) or not isinstance(seed, int):
            continue
        for line, job in zip(lines, jobs, strict=True):
            if (
                job.first <= index < job.first + job.n
                and "seed" not in line
                and job.prompt == r.get("prompt")
            ):
                return seed - (index - job.first)
    return None
