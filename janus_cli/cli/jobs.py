"""The image commands' work list: prompts (argument, stdin, or a prompts file with per-line
overrides) become jobs, each a prompt with its image count, seed and settings."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from janus_cli.cli import common, tables
from janus_cli.errors import InputError


@dataclass(frozen=True)
class Job:
    prompt: str
    n: int  # images of this prompt
    seed: int  # image k uses seed + k (per-image seeding)
    first: int  # run index of image 0, names its file
    options: dict  # sampling settings of this job (the command's, with the line's overrides)


def read_prompts(prompt: str | None, prompts_file: str | None) -> list[dict]:
    """One dict per prompt: {"prompt": ...} from the argument or stdin (`-`), or the lines of
    PROMPTS_FILE (text, or JSON objects with overrides); refuses empty prompts."""
    if (prompt is None) == (prompts_file is None):
        raise InputError("give a prompt (or - for stdin) or --prompts-file, not both" if prompt else "missing prompt: give PROMPT or --prompts-file")
    lines = [{"prompt": p} for p in common.read_lines(prompt)] if prompt is not None else read_prompts_file(prompts_file)
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
            raise InputError(f"{path}:{number}: a JSON line needs a \"prompt\"")
        lines.append({**doc, "_line": f"{path}:{number}"})
    return lines


def make_jobs(lines: list[dict], n: int, seed: int, options: dict, checks: dict) -> list[Job]:
    """Jobs from prompt LINES: "n", "seed" and the keys of OPTIONS may be overridden per line,
    each value checked by CHECKS[key] (value -> error or None). Indices continue across jobs."""
    jobs, first = [], 0
    for line in lines:
        where = line.get("_line", "prompt")
        unknown = sorted(set(line) - {"prompt", "n", "seed", "_line", *options})
        if unknown:
            allowed = ", ".join(["prompt", "n", "seed", *options])
            raise InputError(f"{where}: unknown key {unknown[0]!r} (allowed: {allowed})")
        for key, value in line.items():
            problem = None if key in ("prompt", "_line") else checks[key](value)
            if problem:
                raise InputError(f"{where}: {key!r} {problem}")
        job = Job(line["prompt"], line.get("n", n), line.get("seed", seed), first,
                  {k: line.get(k, v) for k, v in options.items()})  # fmt: skip
        jobs.append(job)
        first += job.n
    return jobs


def number(kind: type, low: float | None = None, high: float | None = None, optional: bool = False):
    """A CHECKS entry: a KIND number in [LOW, HIGH] (None allowed when OPTIONAL)."""

    def check(value) -> str | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
            return f"must be {'an integer' if kind is int else 'a number'}"
        if (low is not None and value < low) or (high is not None and value > high):
            return f"must be in [{low}, {high if high is not None else 'inf'}]"
        return None

    return check


def select_images(jobs: list[Job], keep) -> list[Job]:
    """The images of JOBS whose run index i has KEEP(i), as jobs of consecutive images (image k
    keeps seed + k)."""
    parts = []
    for job in jobs:
        k = 0
        while k < job.n:
            if not keep(job.first + k):
                k += 1
                continue
            end = k
            while end < job.n and keep(job.first + end):
                end += 1
            parts.append(replace(job, n=end - k, seed=job.seed + k, first=job.first + k))
            k = end
    return parts


def shard_jobs(jobs: list[Job], owned: range) -> list[Job]:
    """The parts of JOBS whose image indices fall in OWNED (image k keeps seed + k)."""
    return select_images(jobs, owned.__contains__)


def recorded_seed(lines: list[dict], jobs: list[Job], records: list[dict]) -> int | None:
    """The run seed of the run that wrote RECORDS, for --resume without --seed: read off an
    image whose prompt line sets no seed of its own (JOBS are LINES' jobs, one per line)."""
    for r in records:
        index, seed = r.get("index"), r.get("seed")
        if not isinstance(index, int) or not isinstance(seed, int):
            continue
        for line, job in zip(lines, jobs):
            if job.first <= index < job.first + job.n and "seed" not in line and job.prompt == r.get("prompt"):
                return seed - (index - job.first)
    return None
