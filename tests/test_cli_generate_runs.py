"""Large `generate` runs: manifests, --resume after a kill, --keep-going, sidecars, mixed batches."""

from __future__ import annotations

import json
import sys

import numpy as np
from conftest import assert_one_line_error, checkpoint_dir, kill_after_first_item
from conftest import run_janus as run
from PIL import Image

from janus_cli.cli.manifest import Manifest

FAST = ("--dtype", "float32", "-q")


def tiny() -> str:
    return str(checkpoint_dir("janus-pro-1b-tiny"))


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_resume_after_a_killed_generate_run_loses_nothing_and_redoes_nothing(tmp_path):
    out, manifest = tmp_path / "out", tmp_path / "made.jsonl"
    # No --seed: the resumed run must find the seed the killed run picked.
    args = [
        "generate",
        "a red fox",
        "-n",
        "3",
        "-b",
        "1",
        "-m",
        tiny(),
        "-o",
        str(out),
        "--manifest",
        str(manifest),
        *FAST,
    ]
    kill_after_first_item([sys.executable, "-m", "janus_cli", *args], manifest)
    before = Manifest(manifest).records()
    assert 1 <= len(before) < 3
    stamps = {r["path"]: (out / r["path"].rsplit("/", 1)[1]).stat().st_mtime_ns for r in before}

    r = run(*args, "--resume", "--jsonl")
    assert r.returncode == 0, r.stderr
    redone = json_lines(r.stdout)
    after = Manifest(manifest).records()
    assert [d["index"] for d in after] == [0, 1, 2]  # each image exactly once, in order
    assert not {d["index"] for d in redone} & {d["index"] for d in before}
    seed = before[0]["seed"] - before[0]["index"]
    assert [d["seed"] for d in after] == [seed, seed + 1, seed + 2]
    assert sorted(p.name for p in out.iterdir()) == [
        "a-red-fox-000.png",
        "a-red-fox-001.png",
        "a-red-fox-002.png",
    ]
    # finished files untouched
    assert all((out / p.rsplit("/", 1)[1]).stat().st_mtime_ns == t for p, t in stamps.items())
    again = run(*args, "--resume")
    assert again.returncode == 0 and again.stdout == "" and "every image is made" in again.stderr


def test_keep_going_records_an_over_long_prompt_and_makes_the_rest(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red fox\n" + "word " * 5000 + "\nan owl\n")
    manifest = tmp_path / "made.jsonl"
    r = run(
        "generate",
        "-f",
        str(prompts),
        "-m",
        tiny(),
        "-o",
        str(tmp_path / "out"),
        "--seed",
        "1",
        "--jsonl",
        "--manifest",
        str(manifest),
        "--keep-going",
        *FAST,
    )
    assert r.returncode == 1
    records = json_lines(r.stdout)
    assert records == Manifest(manifest).records()
    failed = [d for d in records if "error" in d]
    assert [d["index"] for d in failed] == [1] and "tokens" in failed[0]["error"]
    made = [d for d in records if "path" in d]
    assert [(d["prompt"], d["index"], d["seed"]) for d in made] == [
        ("a red fox", 0, 1),
        ("an owl", 2, 1),
    ]  # each prompt counts from --seed
    assert (
        "error: prompt is" in r.stderr and r.stderr.strip().splitlines()[-1] == "error: 1 of 3 images failed"
    )
    without = run("generate", "-f", str(prompts), "-m", tiny(), "-o", str(tmp_path / "out2"), *FAST)
    assert_one_line_error(without, "tokens")


def test_mixed_prompts_batched_in_one_forward_make_the_images_made_one_by_one(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red fox\na lighthouse on a cliff above a stormy sea\nowl\n")
    common = ("-m", tiny(), "--top-k", "40", *FAST)
    made = {}
    for size in ("3", "1"):  # all three prompts in one forward; each in a forward of its own
        r = run(
            "generate",
            "-f",
            str(prompts),
            "--seed",
            "4",
            "-b",
            size,
            "-o",
            str(tmp_path / size),
            "--json",
            *common,
        )
        assert r.returncode == 0, r.stderr
        made[size] = [
            (d["prompt"], d["seed"], np.array(Image.open(d["path"]))) for d in json.loads(r.stdout)["images"]
        ]
    assert [m[:2] for m in made["3"]] == [m[:2] for m in made["1"]] and len(made["1"]) == 3
    for (_, _, a), (_, _, b) in zip(made["3"], made["1"], strict=True):
        assert np.array_equal(a, b)  # the same tokens, each image decoded alone


def test_sidecar_holds_the_recipe_of_its_png(tmp_path):
    r = run(
        "generate",
        "a red fox",
        "-m",
        tiny(),
        "--seed",
        "2",
        "-o",
        str(tmp_path / "{slug}-{seed}.png"),
        "--sidecar",
        *FAST,
    )
    assert r.returncode == 0, r.stderr
    png = r.stdout.strip()
    assert png.endswith("a-red-fox-2.png")
    side = json.loads((tmp_path / "a-red-fox-2.json").read_text())
    assert side == {**json.loads(Image.open(png).info["janus-cli"]), "path": png}
    assert (side["prompt"], side["seed"], side["cfg"], side["temperature"]) == ("a red fox", 2, 5.0, 1.0)


def test_bad_run_options_are_one_line_errors(tmp_path):
    assert_one_line_error(run("generate", "a cat", "--resume"), "--resume needs --manifest")
    assert_one_line_error(
        run("flow-generate", "a cat", "--noise", "official", "--shard", "1/2"), "--noise official"
    )
