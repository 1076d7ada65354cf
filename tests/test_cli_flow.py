"""`janus flow-generate` through the real command line: golden images, family errors, dtype."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import (
    assert_one_line_error,
    assert_uint8_close,
    checkpoint_dir,
    golden_json,
    golden_tensors,
    image_path,
)
from conftest import run_janus as run
from PIL import Image
from typer.testing import CliRunner

from janus_cli.cli import app

NAME = "janusflow-1.3b-tiny"


def test_help():
    result = CliRunner().invoke(app, ["flow-generate", "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.stdout and "--noise" in result.stdout


@pytest.mark.slow
def test_flow_generate_reproduces_golden_images(tmp_path):
    g = golden_json(NAME)["generate"]
    r = run(
        "flow-generate",
        g["prompt"],
        "-m",
        str(checkpoint_dir(NAME)),
        "--vae",
        str(checkpoint_dir(f"{NAME}-vae")),
        "-n",
        "2",
        "--steps",
        "5",
        "--cfg",
        "2",
        "--seed",
        "12345",
        "--noise",
        "official",
        "-o",
        str(tmp_path),
        "--dtype",
        "float32",
    )
    assert r.returncode == 0, r.stderr
    paths = r.stdout.splitlines()
    assert len(paths) == 2 and all(p.endswith(".png") for p in paths), r.stdout
    golden = golden_tensors(NAME)["generate.images_uint8_5_steps"]
    for path, expected in zip(paths, golden, strict=True):
        img = Image.open(path)
        assert_uint8_close(torch.from_numpy(np.array(img.convert("RGB"))), expected)
        meta = json.loads(img.info["janus-cli"])
        assert meta["seed"] == 12345 and meta["steps"] == 5 and meta["noise"] == "official"


def test_flow_generate_refuses_a_janus_checkpoint(tmp_path):
    r = run(
        "flow-generate",
        "a fox",
        "-m",
        str(checkpoint_dir("janus-pro-1b-tiny")),
        "-o",
        str(tmp_path),
        "--dtype",
        "float32",
    )
    assert_one_line_error(r, "janus generate")
    assert not list(tmp_path.iterdir())


def test_generate_refuses_a_janusflow_checkpoint(tmp_path):
    r = run("generate", "a fox", "-m", str(checkpoint_dir(NAME)), "-o", str(tmp_path), "--dtype", "float32")
    assert_one_line_error(r, "janus flow-generate")


def test_float16_is_refused(tmp_path):
    r = run(
        "flow-generate", "a fox", "-m", str(checkpoint_dir(NAME)), "-o", str(tmp_path), "--dtype", "float16"
    )
    assert_one_line_error(r, "float16")


@pytest.mark.slow
def test_describe_with_janusflow_reproduces_golden():
    u = golden_json(NAME)["understand"]
    r = run(
        "describe",
        str(image_path(u["image"])),
        "-p",
        u["question"],
        "-m",
        str(checkpoint_dir(NAME)),
        "--temperature",
        "0",
        "--max-tokens",
        "24",
        "--json",
        "--dtype",
        "float32",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["text"] == u["greedy_text"]
