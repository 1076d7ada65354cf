"""The command line for pipelines: JSON lines, prompt files, folders/globs/stdin of images,
--keep-going, --from-image, the generated reference, manifests with --resume, and shards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, checkpoint_dir, image_path, kill_after_first_item
from conftest import run_janus as run
from PIL import Image

from janus_cli.cli import docs, inputs, jobs
from janus_cli.cli.manifest import Manifest
from janus_cli.pipelines.batching import select_images
from janus_cli.pipelines.text_to_image import GenerateSettings

ROOT = Path(__file__).parents[1]
TINY = "janus-pro-1b-tiny"
FAST = ("--max-tokens", "2", "--dtype", "float32", "-b", "1", "-q")


def tiny() -> str:
    return str(checkpoint_dir(TINY))


def json_lines(stdout: str) -> list[dict]:
    """Every stdout line is one JSON object (nothing else is on stdout)."""
    return [json.loads(line) for line in stdout.splitlines()]


def image_folder(tmp_path: Path, names=("square0.png", "grey0.png", "portrait0.png")) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in names:
        (folder / name).write_bytes(image_path(name).read_bytes())
    (folder / "notes.txt").write_text("not an image; skipped in a folder")
    return folder


# ---- no model needed -------------------------------------------------------------------


def test_docs_cli_md_is_up_to_date():
    assert (ROOT / "docs" / "cli.md").read_text() == docs.render(), (
        "docs/cli.md is stale: python -m janus_cli.cli.docs > docs/cli.md"
    )


@pytest.mark.parametrize("total", [0, 1, 5, 7, 100])
@pytest.mark.parametrize("count", [1, 2, 3, 8])
def test_shards_cover_every_item_exactly_once(total, count):
    owned = [i for k in range(1, count + 1) for i in inputs.shard_range(total, (k, count))]
    assert owned == list(range(total))


def test_shards_split_generate_jobs_keeping_each_image_seed():
    work = jobs.make_jobs(
        [{"prompt": "a"}, {"prompt": "b", "n": 3, "seed": 10}],
        GenerateSettings,
        {"n": 2, "seed": 5},
        ("n", "seed"),
    )
    whole = {(j.prompt, j.first + k, j.seed_of(k)) for j in work for k in range(j.n)}
    parts = [select_images(work, inputs.shard_range(5, (k, 3)).__contains__) for k in (1, 2, 3)]
    images = [(j.prompt, j.first + k, j.seed_of(k)) for part in parts for j in part for k in range(j.n)]
    assert (
        sorted(images, key=lambda t: t[1]) == sorted(whole, key=lambda t: t[1])
        and len(images) == len(whole) == 5
    )


def test_shard_from_slurm_and_bad_specs():
    assert inputs.parse_shard(None, {}) is None
    assert inputs.parse_shard(None, {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4"}) == (1, 4)
    assert inputs.parse_shard(
        None, {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"}
    ) == (4, 4)
    assert inputs.parse_shard("2/3", {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4"}) == (2, 3)
    assert_one_line_error(run("describe", str(image_path("square0.png")), "--shard", "0/2"), "--shard 0/2")
    assert_one_line_error(run("generate", "a cat", "--shard", "x"), "K/N")


def test_folders_and_globs_expand_sorted(tmp_path):
    folder = image_folder(tmp_path)
    pngs = sorted(str(p) for p in folder.glob("*.png"))
    assert inputs.expand_images([str(folder)]) == pngs
    assert inputs.expand_images([str(folder / "*0.png"), "-"]) == [*pngs, "-"]
    assert_one_line_error(run("describe", str(folder / "*.gif")), "no files match")


def test_manifest_ignores_a_line_cut_short_and_appends_on_a_fresh_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"image": "a", "text": "x"}\n{"image": "b", "te')
    log = Manifest(path)
    assert log.records() == [{"image": "a", "text": "x"}]
    log.append({"image": "c", "text": "y"})
    assert [r["image"] for r in Manifest(path).records()] == ["a", "c"]


@pytest.mark.parametrize(
    "line, needle",
    [
        ('{"prompt": "a cat", "colour": "red"}', "prompts.jsonl:2: unknown key 'colour'"),
        ('{"prompt": "a cat", "n": 0}', "prompts.jsonl:2: 'n' must be in"),
        ('{"prompt": "a cat", "cfg": "high"}', "prompts.jsonl:2: 'cfg' must be a number"),
        ('{"prompt": "a cat",', "prompts.jsonl:2: not valid JSON"),
        ('{"n": 2}', 'prompts.jsonl:2: a JSON line needs a "prompt"'),
    ],
)
def test_prompts_file_errors_name_the_line(tmp_path, line, needle):
    (tmp_path / "prompts.jsonl").write_text(f"a dog\n{line}\n")
    r = run("generate", "--prompts-file", str(tmp_path / "prompts.jsonl"), "-o", str(tmp_path))
    assert_one_line_error(r, needle)


def test_prompt_and_prompts_file_are_exclusive(tmp_path):
    (tmp_path / "p.txt").write_text("a dog\n")
    assert_one_line_error(run("generate", "a cat", "--prompts-file", str(tmp_path / "p.txt")), "not both")
    assert_one_line_error(run("generate", "a cat", "--json", "--jsonl"), "choose one")


# ---- generate --------------------------------------------------------------------------


def test_prompts_file_with_overrides_streams_jsonl(tmp_path):
    (tmp_path / "prompts.jsonl").write_text(
        'a red cat\n\n{"prompt": "a blue dog", "seed": 7, "cfg": 3, "temperature": 0.5}\n'
    )
    r = run(
        "generate",
        "-f",
        str(tmp_path / "prompts.jsonl"),
        "-m",
        tiny(),
        "--seed",
        "5",
        "-o",
        str(tmp_path / "out"),
        "--dtype",
        "float32",
        "--jsonl",
    )
    assert r.returncode == 0, r.stderr
    records = json_lines(r.stdout)
    got = [(d["prompt"], d["index"], d["seed"], d["cfg"], d["temperature"]) for d in records]
    assert got == [("a red cat", 0, 5, 5.0, 1.0), ("a blue dog", 1, 7, 3, 0.5)]
    for d in records:
        meta = json.loads(Image.open(d["path"]).info["janus-cli"])
        assert (meta["seed"], meta["cfg"], meta["prompt"]) == (d["seed"], d["cfg"], d["prompt"])


def test_from_image_remakes_the_same_pixels(tmp_path):
    # Made two per forward, re-made alone: images decode one by one, so the pixels are the same.
    r = run(
        "generate",
        "a lighthouse at dawn",
        "-m",
        tiny(),
        "-n",
        "2",
        "-b",
        "2",
        "--temperature",
        "1",
        "--seed",
        "11",
        "--top-k",
        "50",
        "--cfg",
        "4",
        "-o",
        str(tmp_path / "first"),
        "--dtype",
        "float32",
        "-q",
    )
    assert r.returncode == 0, r.stderr
    second = r.stdout.splitlines()[1]
    again = run(
        "generate",
        "--from-image",
        second,
        "-o",
        str(tmp_path / "again"),
        "--dtype",
        "float32",
        "--json",
        "-q",
    )
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)["images"][0]
    assert (doc["prompt"], doc["seed"], doc["cfg"], doc["top_k"], doc["model"]) == (
        "a lighthouse at dawn",
        12,
        4.0,
        50,
        tiny(),
    )
    assert np.array_equal(np.array(Image.open(second)), np.array(Image.open(doc["path"])))


def test_flow_generate_prompts_file_with_overrides_streams_jsonl(tmp_path):
    flow = "janusflow-1.3b-tiny"
    (tmp_path / "p.jsonl").write_text('a fox\n{"prompt": "a hen", "steps": 2, "seed": 9}\n')
    r = run(
        "flow-generate",
        "-f",
        str(tmp_path / "p.jsonl"),
        "-m",
        str(checkpoint_dir(flow)),
        "--vae",
        str(checkpoint_dir(f"{flow}-vae")),
        "--steps",
        "1",
        "--seed",
        "3",
        "-o",
        str(tmp_path),
        "--dtype",
        "float32",
        "--jsonl",
        "-q",
    )
    assert r.returncode == 0, r.stderr
    got = [(d["prompt"], d["index"], d["seed"], d["steps"]) for d in json_lines(r.stdout)]
    assert got == [("a fox", 0, 3, 1), ("a hen", 1, 9, 2)]
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a hen", "temperature": 1}\n')
    assert_one_line_error(
        run("flow-generate", "-f", str(tmp_path / "bad.jsonl"), "-o", str(tmp_path)),
        "bad.jsonl:1: unknown key 'temperature'",
    )


# ---- describe --------------------------------------------------------------------------


def test_keep_going_records_a_corrupt_image_in_a_folder(tmp_path):
    folder = image_folder(tmp_path, names=("square0.png",))
    (folder / "broken.png").write_bytes(image_path("square0.png").read_bytes()[:1000])  # a PNG cut short
    r = run("describe", str(folder), "-m", tiny(), "--jsonl", "--keep-going", *FAST)
    assert r.returncode != 0
    records = {d["image"]: d for d in json_lines(r.stdout)}
    assert set(records) == {str(folder / "broken.png"), str(folder / "square0.png")}
    assert "error" in records[str(folder / "broken.png")] and records[str(folder / "square0.png")]["text"]
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2 and "broken.png" in errors[0] and "1 of 2 images failed" in errors[1]


def test_image_bytes_on_stdin():
    data = image_path("square0.png").read_bytes()
    env = {**os.environ, "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "janus_cli", "describe", "-", "-m", tiny(), "--json", *FAST]
    r = subprocess.run(cmd, input=data, capture_output=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr.decode()
    [doc] = json_lines(r.stdout.decode())
    assert doc["image"] == "-" and doc["tokens"] == 2


def test_shards_of_a_describe_run_cover_every_image_once(tmp_path):
    folder = image_folder(tmp_path)
    first = run("describe", str(folder), "-m", tiny(), "--jsonl", "--shard", "1/2", *FAST)
    second = run(
        "describe",
        str(folder),
        "-m",
        tiny(),
        "--jsonl",
        *FAST,
        env={"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2"},
    )
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    images = [d["image"] for d in json_lines(first.stdout) + json_lines(second.stdout)]
    assert sorted(images) == sorted(str(p) for p in folder.glob("*.png")) and len(images) == 3


def test_resume_after_a_killed_run_loses_nothing_and_redoes_nothing(tmp_path):
    folder = image_folder(tmp_path)
    manifest = tmp_path / "captions.jsonl"
    args = [
        sys.executable,
        "-m",
        "janus_cli",
        "describe",
        str(folder),
        "-m",
        tiny(),
        "--manifest",
        str(manifest),
        *FAST,
    ]
    kill_after_first_item(args, manifest)
    before = [r["image"] for r in Manifest(manifest).records()]
    assert 1 <= len(before) < 3
    r = run("describe", str(folder), "-m", tiny(), "--manifest", str(manifest), "--resume", "--jsonl", *FAST)
    assert r.returncode == 0, r.stderr
    redone = [d["image"] for d in json_lines(r.stdout)]
    assert not set(redone) & set(before)
    after = [rec["image"] for rec in Manifest(manifest).records()]
    assert sorted(after) == sorted(str(p) for p in folder.glob("*.png")) and after == before + redone
