"""The README's pipeline blocks, run verbatim in bash with the console script, on a tiny checkpoint."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import checkpoint_dir, image_path
from PIL import Image

README = Path(__file__).parents[1] / "README.md"


def pipeline_blocks() -> list[str]:
    section = README.read_text().split("## Pipelines", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.S)


def janus_bin() -> str:
    here = Path(sys.executable).parent / "janus"
    found = str(here) if here.exists() else shutil.which("janus")
    if found is None:
        pytest.skip("the janus console script is not installed")
    return str(Path(found).parent)


def test_readme_pipelines_run_as_written(tmp_path):
    blocks = pipeline_blocks()
    assert len(blocks) == 6, "README pipeline blocks changed: update this test"
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(image_path("landscape0.jpg"), photos / "cat.jpg")
    Image.open(image_path("square0.png")).save(photos / "dog.jpg")
    (tmp_path / "prompts.txt").write_text("a red fox\nan owl at night\n")
    # the default dtype, as a user gets it (bf16 on this CPU: its VQ decoding is 2.4x fp32's)
    env = {
        **os.environ,
        "PATH": janus_bin() + os.pathsep + os.environ["PATH"],
        "K": "4",
        "JANUS_MODEL": str(checkpoint_dir("janus-pro-1b-tiny")),
    }

    def bash(block: str) -> subprocess.CompletedProcess:
        r = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert r.returncode == 0, f"{block}\n{r.stderr}"
        return r

    caption, batch, prompt_file, xargs, recipe, chat = blocks
    bash(caption)
    captions = [json.loads(line) for line in (tmp_path / "captions.jsonl").read_text().splitlines()]
    assert [Path(c["image"]).name for c in captions] == ["cat.jpg", "dog.jpg"] and all(
        "text" in c for c in captions
    )
    assert json.loads((tmp_path / "cat.json").read_text())["image"] == "-"

    bash(batch)  # shard 4 of 4: the last image, and the last prompt
    assert [
        Path(r["image"]).name
        for r in map(json.loads, (tmp_path / "captions-4.jsonl").read_text().splitlines())
    ] == ["dog.jpg"]
    assert [
        r["prompt"] for r in map(json.loads, (tmp_path / "out" / "made-4.jsonl").read_text().splitlines())
    ] == ["an owl at night"]

    bash(prompt_file)
    images = [json.loads(line) for line in (tmp_path / "images.jsonl").read_text().splitlines()]
    assert [(d["prompt"], d["index"]) for d in images] == [
        ("a red fox in the snow", 0),
        ("a lighthouse at dawn", 1),
        ("a lighthouse at dawn", 2),
    ]
    assert all((tmp_path / d["path"]).with_suffix(".json").is_file() for d in images)

    paths = bash(
        xargs
    ).stdout.splitlines()  # xargs' two runs, then one run of both prompts, never overwriting
    assert paths == [
        "out/a-red-fox-000.png",
        "out/an-owl-at-night-000.png",
        "out/a-red-fox-2-000.png",
        "out/an-owl-at-night-2-001.png",
    ]
    assert all((tmp_path / p).is_file() for p in paths)

    bash(recipe)
    again, variant = (
        json.loads(Image.open(next((tmp_path / d).glob("*.png"))).info["janus-cli"])
        for d in ("again", "variant")
    )
    assert (again["prompt"], again["seed"], again["cfg"], variant["cfg"]) == (
        "a lighthouse at dawn",
        43,
        4,
        7.0,
    )

    answers = bash(chat).stdout.splitlines()
    assert len(answers) == 2
