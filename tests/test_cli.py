"""The real command line: help, end-to-end runs on tiny checkpoints, one-line errors."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

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


@pytest.mark.parametrize(
    "command", [[], ["describe"], ["generate"], ["flow-generate"], ["chat"], ["convert"], ["models"]]
)
def test_help(command):
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.stdout


def test_help_does_not_import_torch():
    code = "import sys, janus_cli.cli; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_console_script_target_exists():
    import tomllib

    target = tomllib.loads(Path(__file__).parents[1].joinpath("pyproject.toml").read_text())["project"][
        "scripts"
    ]["janus"]
    module, func = target.split(":")
    assert callable(getattr(__import__(module, fromlist=[func]), func))


def test_describe_json_reproduces_golden():
    folder = checkpoint_dir("janus-pro-1b-tiny")
    u = golden_json("janus-pro-1b-tiny")["understand"]
    r = run(
        "describe",
        str(image_path(u["image"])),
        "-p",
        u["question"],
        "-m",
        str(folder),
        "--temperature",
        "0",
        "--max-tokens",
        "24",
        "--json",
        "--dtype",
        "float32",
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert doc["text"] == u["greedy_text"] and doc["image"] == str(image_path(u["image"]))
    assert doc["temperature"] == 0 and doc["max_tokens"] == 24 and doc["model"] == str(folder)


def test_describe_streams_plain_text_and_batches_several_images():
    folder = checkpoint_dir("janus-pro-1b-tiny")
    u = golden_json("janus-pro-1b-tiny")["understand"]
    img = str(image_path(u["image"]))
    r = run(
        "describe",
        img,
        "-p",
        u["question"],
        "-m",
        str(folder),
        "--max-tokens",
        "24",
        "--dtype",
        "float32",
        "-q",
    )
    assert r.returncode == 0 and r.stdout == u["greedy_text"] + "\n" and r.stderr == ""
    r = run(
        "describe",
        img,
        img,
        "-p",
        u["question"],
        "-m",
        str(folder),
        "--max-tokens",
        "24",
        "--dtype",
        "float32",
        "--json",
        "-q",
    )
    docs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [d["text"] for d in docs] == [u["greedy_text"]] * 2


def test_generate_reproduces_golden_images(tmp_path):
    name = "janus-pro-7b-tiny"
    g = golden_json(name)["generate"]
    golden = golden_tensors(name)["generate.greedy_images_uint8"]
    out = tmp_path / "out"
    args = [
        "generate",
        g["prompt"],
        "-m",
        str(checkpoint_dir(name)),
        "-n",
        "2",
        "--temperature",
        "0",
        "--seed",
        "0",
        "-o",
        str(out),
        "--dtype",
        "float32",
    ]
    r = run(*args)
    assert r.returncode == 0, r.stderr
    paths = r.stdout.splitlines()
    assert len(paths) == 2 and paths == sorted(paths)
    for k, p in enumerate(paths):
        img = Image.open(p)
        assert_uint8_close(torch.from_numpy(np.array(img.convert("RGB"))), golden[k])
        assert img.text["prompt"] == g["prompt"] and img.text["seed"] == str(k)
        assert json.loads(img.text["janus-cli"])["cfg"] == 5.0
    again = run(*args, "--json", "-q")  # never overwrites: a second run gets fresh names
    doc = json.loads(again.stdout)
    assert [Path(i["path"]).name for i in doc["images"]] != [Path(p).name for p in paths]
    assert all(Path(p).exists() for p in paths) and len(list(out.iterdir())) == 4


def test_generate_refuses_to_overwrite_a_template_path(tmp_path):
    target = tmp_path / "img.png"
    target.write_bytes(b"precious")
    r = run("generate", "a cat", "-m", str(checkpoint_dir("janus-pro-1b-tiny")), "-o", str(target))
    assert_one_line_error(r, "exists")
    assert target.read_bytes() == b"precious"


def test_stdin_prompts(tmp_path):
    r = run(
        "generate",
        "-",
        "-m",
        str(checkpoint_dir("janus-pro-1b-tiny")),
        "-o",
        str(tmp_path),
        "--seed",
        "3",
        "--json",
        "-q",
        stdin="a cat\na dog\n",
    )
    assert r.returncode == 0, r.stderr
    images = json.loads(r.stdout)["images"]
    assert [(i["prompt"], i["seed"], i["index"]) for i in images] == [("a cat", 3, 0), ("a dog", 3, 1)]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["describe", "missing.png"], "no such file"),
        (["describe", __file__], "not an image"),
        (["generate", "a cat", "-n", "0"], "--num-images"),
        (["generate", "a cat", "--cfg", "-1"], "--cfg"),
        (["generate", "a cat", "--top-p", "0"], "--top-p"),
        (["generate", "a cat", "--dtype", "float16"], "float16"),
        (["generate", "a cat", "--device", "tpu"], "--device"),
        (["generate", "a cat", "-m", "./no/such/dir"], "no such directory"),
    ],
)
def test_bad_input_is_one_line_error(args, needle):
    assert_one_line_error(run(*args), needle)


def test_prompt_longer_than_context():
    r = run("generate", "word " * 5000, "-m", str(checkpoint_dir("janus-pro-1b-tiny")))
    assert_one_line_error(r, "tokens")


def test_missing_and_truncated_weights(tmp_path):
    from safetensors.torch import load_file, save_file

    src = checkpoint_dir("janus-1.3b-tiny")
    img = str(image_path("square0.png"))
    for name in ("missing", "truncated"):
        d = tmp_path / name
        d.mkdir()
        for f in src.iterdir():
            if f.name != "model.safetensors":
                (d / f.name).symlink_to(f)
    state = load_file(str(src / "model.safetensors"))
    del state["gen_head.vision_head.bias"]
    save_file(state, str(tmp_path / "missing" / "model.safetensors"))
    assert_one_line_error(run("describe", img, "-m", str(tmp_path / "missing")), "gen_head.vision_head.bias")
    (tmp_path / "truncated" / "model.safetensors").write_bytes(
        (src / "model.safetensors").read_bytes()[:1_000_000]
    )
    assert_one_line_error(run("describe", img, "-m", str(tmp_path / "truncated")), "model.safetensors")


def test_offline_hub_model_is_one_line_error(tmp_path):
    r = run("generate", "a cat", env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)})
    assert_one_line_error(r, "deepseek-ai/Janus-Pro-1B")


def test_shell_completion_completes_commands_and_options():
    script = [str(Path(sys.executable).parent / "janus")]  # completion keys on the program's name
    if not Path(script[0]).exists():
        pytest.skip("the janus console script is not installed")
    env = {**os.environ, "_JANUS_COMPLETE": "complete_bash", "COMP_CWORD": "1"}
    assert subprocess.run(
        script, env={**env, "COMP_WORDS": "janus gen"}, capture_output=True, text=True
    ).stdout.split() == ["generate"]
    options = subprocess.run(
        script,
        env={**env, "COMP_WORDS": "janus chat --max", "COMP_CWORD": "2"},
        capture_output=True,
        text=True,
    )
    assert options.stdout.split() == ["--max-tokens"]


@pytest.mark.parametrize("no_color", [False, True])
def test_no_color_is_respected_on_a_terminal(no_color):
    import pty

    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    env.update({"TERM": "xterm-256color", "COLUMNS": "100", **({"NO_COLOR": "1"} if no_color else {})})
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "janus_cli", "generate", "--help"], stdout=child, stderr=child, env=env
    )
    os.close(child)
    out = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    proc.wait()
    os.close(main)
    assert b"Usage" in out
    params = [p for sgr in re.findall(rb"\x1b\[([0-9;]*)m", out) for p in sgr.split(b";") if p]
    # NO_COLOR keeps bold, drops colour
    colored = any(30 <= int(p) <= 49 or 90 <= int(p) <= 107 for p in params)
    assert colored is not no_color
