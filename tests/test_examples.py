"""Every script of examples/ and every Python block of the README's "Python API" section runs,
on the tiny fixture checkpoints."""

from __future__ import annotations

import csv
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

ROOT = Path(__file__).parents[1]
EXAMPLES = ROOT / "examples"
TINY = ["--device", "cpu", "--dtype", "float32"]


def python(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, **(env or {})},
    )
    assert r.returncode == 0, r.stderr
    return r


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(image_path("landscape0.jpg"), folder / "cat.jpg")
    Image.open(image_path("square0.png")).save(folder / "dog.jpg")
    return folder


@pytest.mark.slow
def test_generate_grid(tmp_path):
    tiny = str(checkpoint_dir("janus-pro-1b-tiny"))
    python(
        str(EXAMPLES / "generate_grid.py"),
        "a red fox",
        "--model",
        tiny,
        "--seed",
        "3",
        "--out",
        "grid.png",
        *TINY,
        cwd=tmp_path,
    )
    sheet = Image.open(tmp_path / "grid.png")
    assert sheet.size == (768, 2 * (384 + 24))


def test_caption_folder(tmp_path, photos):
    tiny = str(checkpoint_dir("janus-pro-1b-tiny"))
    python(
        str(EXAMPLES / "caption_folder.py"),
        str(photos),
        "--model",
        tiny,
        "--max-tokens",
        "4",
        *TINY,
        cwd=tmp_path,
    )
    rows = list(csv.reader(open(tmp_path / "captions.csv", encoding="utf-8")))
    assert rows[0] == ["file", "caption"] and [r[0] for r in rows[1:]] == ["cat.jpg", "dog.jpg"]


def test_chat_two_images(tmp_path, photos):
    tiny = str(checkpoint_dir("janus-pro-1b-tiny"))
    out = python(
        str(EXAMPLES / "chat_two_images.py"),
        str(photos / "cat.jpg"),
        str(photos / "dog.jpg"),
        "--model",
        tiny,
        "--max-tokens",
        "4",
        *TINY,
        cwd=tmp_path,
    )
    assert [line for line in out.stdout.splitlines() if line.startswith("> ")] == [
        "> What is in this picture?",
        "> And in this one?",
        "> Which one is brighter?",
    ]


@pytest.mark.slow
def test_flow_steps(tmp_path):
    name = "janusflow-1.3b-tiny"
    python(
        str(EXAMPLES / "flow_steps.py"),
        "a harbour",
        "--model",
        str(checkpoint_dir(name)),
        "--vae",
        str(checkpoint_dir(f"{name}-vae")),
        "--steps",
        "1",
        "2",
        "--out",
        "steps.png",
        *TINY,
        cwd=tmp_path,
    )
    assert Image.open(tmp_path / "steps.png").size == (768, 384)


@pytest.mark.slow
def test_round_trip(tmp_path):
    (tmp_path / "prompts.txt").write_text("a red fox\nan owl\n")
    bindir = str(Path(sys.executable).parent)
    env = {
        "MODEL": str(checkpoint_dir("janus-pro-1b-tiny")),
        "JANUS_EXTRA": "--dtype float32 --device cpu",
        "PATH": bindir + os.pathsep + os.environ["PATH"],
    }
    if not (Path(bindir) / "janus").exists():
        pytest.skip("the janus console script is not installed")
    r = subprocess.run(
        ["bash", str(EXAMPLES / "round_trip.sh"), "prompts.txt", "out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, **env},
    )
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in (tmp_path / "out" / "round_trip.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["a red fox", "an owl"] and all(
        r["caption"] is not None and Path(tmp_path, r["file"]).exists() or Path(r["file"]).exists()
        for r in rows
    )


def api_blocks() -> list[str]:
    section = (ROOT / "README.md").read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.mark.slow
def test_readme_python_api_blocks_run_as_written(tmp_path, photos):
    blocks = api_blocks()
    assert len(blocks) == 2, "README Python API blocks changed: update this test"
    tiny = str(checkpoint_dir("janus-pro-1b-tiny"))
    for k, block in enumerate(blocks):
        script = block.replace('janus_cli.load("janus-pro-1b")', f'janus_cli.load({tiny!r}, device="cpu")')
        assert script != block
        (tmp_path / f"block{k}.py").write_text(script)
    first = python("block0.py", cwd=tmp_path).stdout.splitlines()
    assert first[0] == "janus" and first[-2:] == ["42 5.0", "43 5.0"]
    assert sorted(p.name for p in tmp_path.glob("lighthouse-*.png")) == [
        "lighthouse-42.png",
        "lighthouse-43.png",
    ]
    second = python("block1.py", cwd=tmp_path).stdout.splitlines()
    assert second[-1] == "stopped; the model is ready for the next call"


def test_finetune_style(tmp_path):
    """examples/finetune_style.sh: the fixture shapes -> an adapter -> an image made with it."""
    bindir = str(Path(sys.executable).parent)
    if not (Path(bindir) / "janus").exists():
        pytest.skip("the janus console script is not installed")
    env = {
        "MODEL": str(checkpoint_dir("janus-pro-1b-tiny")),
        "STEPS": "2",
        "N": "1",
        "JANUS_EXTRA": "--dtype float32 --device cpu",
        "FINETUNE_EXTRA": "--samples 0",
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "PATH": bindir + os.pathsep + os.environ["PATH"],
    }
    shapes = Path(__file__).parent / "fixtures" / "finetune" / "shapes"
    r = subprocess.run(
        ["bash", str(EXAMPLES / "finetune_style.sh"), str(shapes), "a red square", "out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, **env},
    )
    assert r.returncode == 0, r.stderr
    made = [Path(line) for line in r.stdout.splitlines()]
    assert len(made) == 1 and (tmp_path / made[0]).exists() or made[0].exists()
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").exists()
