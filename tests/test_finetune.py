"""`janus finetune` on the tiny fixtures: the training works (a describe adapter makes
`janus describe` say the trained answers), prompt dropout trains unconditional rows, a resumed
run ends with the bytes of an uninterrupted one, and bad data gets one line per record.

Training runs with one thread (OMP_NUM_THREADS=1): the tiny model's ops are too small for two
threads to pay, and a busy machine makes them much slower.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FIXTURES, assert_one_line_error, assert_uint8_close, checkpoint_dir, run_janus

DATA = FIXTURES / "finetune"
TINY = ["--device", "cpu", "--dtype", "float32"]


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    """One training cache (VQ codes, SigLIP features) for the module's runs."""
    return {"XDG_CACHE_HOME": str(tmp_path_factory.mktemp("cache")), "OMP_NUM_THREADS": "1"}


def finetune(out: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    model = str(checkpoint_dir("janus-pro-1b-tiny"))
    return run_janus("finetune", "-m", model, "-o", str(out), *TINY, *args, env=env)


@pytest.fixture(scope="module")
def describe_adapter(tmp_path_factory, env) -> Path:
    out = tmp_path_factory.mktemp("describe") / "adapter"
    r = finetune(
        out,
        env,
        "--task",
        "describe",
        "--data",
        str(DATA / "describe.jsonl"),
        "--steps",
        "120",
        "--lr",
        "1e-2",
        "--rank",
        "8",
        "--dropout",
        "0",
        "--seed",
        "1",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(out)
    return out


def test_describe_adapter_says_the_trained_answers(describe_adapter, env):
    """(b) Trained on three images with answers, `janus describe --adapter` at temperature 0
    prints each answer exactly; the base model does not."""
    assert (describe_adapter / "loss.png").exists()
    records = [json.loads(line) for line in (DATA / "describe.jsonl").read_text().splitlines()]
    model = str(checkpoint_dir("janus-pro-1b-tiny"))
    images = [str(DATA / r["image"]) for r in records]
    question = records[0]["question"]
    assert all(r["question"] == question for r in records)
    runs = {}
    for name, extra in (("adapter", ["--adapter", str(describe_adapter)]), ("base", [])):
        r = run_janus(
            "describe",
            *images,
            "-p",
            question,
            "-m",
            model,
            "--temperature",
            "0",
            "--jsonl",
            "-q",
            *TINY,
            *extra,
            env=env,
        )
        assert r.returncode == 0, r.stderr
        runs[name] = [json.loads(line)["text"].strip() for line in r.stdout.splitlines()]
    assert runs["adapter"] == [r["answer"] for r in records]
    assert not set(runs["base"]) & {r["answer"] for r in records}


def test_prompt_dropout_trains_unconditional_rows(monkeypatch):
    """(e) With --prompt-dropout p, about a share p of the samples train on the unconditional
    prompt, exactly the row inference builds (make_uncond_ids); with 0, none do."""
    import torch

    from janus_cli.prompts import make_uncond_ids
    from janus_cli.training.data import generate_example
    from janus_cli.training.loop import Save, Settings, Trainer

    prompts = [[1, 5, 6, 7, 9], [1, 8, 8, 9], [1, 4, 9]]
    examples = [generate_example(p, 2, torch.zeros(576, dtype=torch.long)) for p in prompts]
    param = torch.nn.Parameter(torch.zeros(1))
    for share in (0.0, 0.5, 1.0):
        seen = []

        def fake_loss(self, batch, features, micro, seen=seen):
            seen.extend(batch)
            return (param * 0).sum()

        monkeypatch.setattr(Trainer, "batch_loss", fake_loss)
        trainer = Trainer(torch.nn.Identity(), {}, [param], Settings("generate", 40, prompt_dropout=share))
        assert [type(e) for e in trainer.train(examples)][-1] is Save
        uncond = [e for e in seen if e.prompt != next(p for p in prompts if len(p) == len(e.prompt))]
        for e in uncond:
            assert e.prompt == e.uncond == make_uncond_ids(e.prompt, 2) and e.prompt[1:-1] == [2] * (
                len(e.prompt) - 2
            )
        assert len(seen) == 40
        if share == 0.0:
            assert not uncond
        elif share == 1.0:
            assert len(uncond) == 40
        else:
            assert 10 <= len(uncond) <= 30


def test_resume_ends_with_the_bytes_of_an_uninterrupted_run(tmp_path, env):
    """(f) Ctrl-C saves a resumable state (exit 130); --resume finishes with the very adapter
    bytes of a run never stopped."""
    args = [
        "--task",
        "describe",
        "--data",
        str(DATA / "describe.jsonl"),
        "--steps",
        "12",
        "--seed",
        "3",
        "--lr",
        "3e-3",
        "--rank",
        "4",
        "--grad-accum",
        "2",
        "--warmup",
        "3",
    ]
    whole = finetune(tmp_path / "whole", env, *args)
    assert whole.returncode == 0, whole.stderr

    model = str(checkpoint_dir("janus-pro-1b-tiny"))
    out = tmp_path / "stopped"
    command = [
        sys.executable,
        "-m",
        "janus_cli",
        "finetune",
        "-m",
        model,
        "-o",
        str(out),
        *TINY,
        *args,
        "--save-every",
        "1",
    ]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env}
    )
    deadline = time.monotonic() + 300
    while not (out / "resume" / "state.json").exists():
        assert proc.poll() is None and time.monotonic() < deadline, (
            proc.stderr.read() if proc.poll() else "slow"
        )
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr
    stopped_at = json.loads((out / "resume" / "state.json").read_text())["step"]
    assert 1 <= stopped_at < 12 and "--resume" in stderr

    again = finetune(out, env, *args)  # without --resume: refused, nothing overwritten
    assert_one_line_error(again, "--resume")
    resumed = finetune(out, env, *args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    name = "adapter_model.safetensors"
    assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    changed = finetune(out, env, *[a if a != "3e-3" else "1e-3" for a in args], "--resume")
    assert_one_line_error(changed, "lr")


BAD = [
    (lambda d: (d / "shapes" / "square.txt").write_text("  \n"), "shapes/square.png: empty caption"),
    (lambda d: (d / "shapes" / "circle.png").write_bytes(b"\x89PNG\r\n\x1a\n broken"), "circle.png: "),
    (lambda d: (d / "shapes" / "triangle.txt").write_text("word " * 17000), "triangle.png: prompt is"),
    (lambda d: (d / "data.jsonl").write_text('{"image": "nowhere.png", "prompt": "x"}\n'), "line 1 ("),
    (
        lambda d: (d / "data.jsonl").write_text('{"image": "shapes/cross.png"}\n'),
        "line 1: needs image, prompt",
    ),
    (
        lambda d: (d / "data.jsonl").write_text('{"image": "shapes/cross.png", "prompt": ""}\n'),
        "empty caption",
    ),
]


@pytest.mark.parametrize("make, needle", BAD)
def test_bad_records_are_named(tmp_path, make, needle):
    """(g) Each kind of bad record fails the check with a message naming it."""
    import shutil

    from janus_cli.config import JanusConfig
    from janus_cli.errors import InputError
    from janus_cli.imageio import load_image
    from janus_cli.pipelines.session import Session
    from janus_cli.tokenizer import Tokenizer
    from janus_cli.training import data
    from janus_cli.training.prepare import _fits

    shutil.copytree(DATA / "shapes", tmp_path / "shapes")
    make(tmp_path)
    path = tmp_path / "data.jsonl" if (tmp_path / "data.jsonl").exists() else tmp_path / "shapes"
    folder = checkpoint_dir("janus-pro-1b-tiny")
    session = Session(
        "tiny",
        folder,
        JanusConfig.from_file(folder / "config.json"),
        None,
        Tokenizer(folder),
        None,
        "cpu",
        None,
    )
    with pytest.raises(InputError) as e:
        records = data.read_records(path, "generate", "")
        data.checked(records, "generate", load_image, _fits(session, "generate"), keep_going=False)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_bad_data_is_one_line_before_any_work(tmp_path, env):
    """(g) On the command line: one `error:` line naming the record, nothing written."""
    import shutil

    shutil.copytree(DATA / "shapes", tmp_path / "shapes")
    (tmp_path / "shapes" / "circle.png").write_bytes(b"not an image")
    r = finetune(
        tmp_path / "out", env, "--task", "generate", "--data", str(tmp_path / "shapes"), "--steps", "1"
    )
    assert_one_line_error(r, "circle.png: not an image")
    assert not (tmp_path / "out").exists()


def test_keep_going_skips_bad_records_and_counts_them(tmp_path, env):
    import shutil

    shutil.copytree(DATA / "shapes", tmp_path / "shapes")
    (tmp_path / "shapes" / "square.txt").unlink()
    (tmp_path / "shapes" / "circle.png").write_bytes(b"not an image")
    r = finetune(
        tmp_path / "out",
        env,
        "--task",
        "generate",
        "--data",
        str(tmp_path / "shapes"),
        "--steps",
        "1",
        "--samples",
        "0",
        "--keep-going",
    )
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert sum(line.startswith("skipped: ") for line in lines) == 2 and "2 records skipped" in r.stderr


def test_janusflow_generate_is_refused_in_one_line(tmp_path, env):
    model = str(checkpoint_dir("janusflow-1.3b-tiny"))
    r = run_janus(
        "finetune",
        "-m",
        model,
        "--task",
        "generate",
        "--data",
        str(DATA / "shapes"),
        "-o",
        str(tmp_path / "out"),
        *TINY,
        env=env,
    )
    assert_one_line_error(r, "--task describe only")


@pytest.fixture(scope="module")
def generate_adapter(tmp_path_factory, env) -> Path:
    out = tmp_path_factory.mktemp("generate") / "adapter"
    r = finetune(
        out,
        env,
        "--task",
        "generate",
        "--data",
        str(DATA / "shapes"),
        "--train-head",
        "--steps",
        "120",
        "--batch-size",
        "4",
        "--lr",
        "2e-2",
        "--dropout",
        "0",
        "--no-checkpointing",
        "--samples",
        "2",
        "--seed",
        "1",
    )
    assert r.returncode == 0, r.stderr
    return out


def test_generate_adapter_reproduces_its_images(generate_adapter, env, tmp_path, monkeypatch):
    """(a) A LoRA (and head) trained on four shapes with four prompts: generating each prompt at
    temperature 0 with the adapter gives at least 95 % of the target's VQ codes, the base model
    far fewer; `janus generate --adapter` writes exactly the image of those codes.

    Without guidance (--cfg 1): a tiny model that memorizes four images predicts each target
    code from its conditional and its unconditional row alike (the prefix of codes names the
    image), so CFG's 5c - 4u has no margin to widen at the target and amplifies the rows' noise
    elsewhere. What the unconditional rows train on is test (e)'s.
    """
    import numpy as np
    import torch
    from PIL import Image

    from janus_cli.checkpoints.adapter import apply_adapter, read_adapter
    from janus_cli.checkpoints.load import load_model
    from janus_cli.config import JanusConfig
    from janus_cli.imageio import to_uint8
    from janus_cli.pipelines.session import Session, prepare_model
    from janus_cli.pipelines.text_to_image import prompt_ids
    from janus_cli.prompts import make_uncond_ids
    from janus_cli.runtime import make_generator
    from janus_cli.sampling.autoregressive import generate_image_tokens
    from janus_cli.sampling.logits import make_sampler
    from janus_cli.tokenizer import Tokenizer
    from janus_cli.training.prepare import encode_targets

    assert (generate_adapter / "loss.png").exists()
    grids = sorted(generate_adapter.glob("samples-*.png"))
    assert grids and Image.open(grids[-1]).size == (2 * 256, 2 * (256 + 16))
    folder = checkpoint_dir("janus-pro-1b-tiny")
    cpu, fp32 = torch.device("cpu"), torch.float32
    cfg, tok = JanusConfig.from_file(folder / "config.json"), Tokenizer(folder)

    def session(adapter: bool) -> Session:
        model = load_model(folder, fp32, cpu, ("generation",))
        if adapter:
            apply_adapter(model, read_adapter(generate_adapter))
        return Session("tiny", folder, cfg, prepare_model(model, cpu, fp32), tok, None, cpu, fp32)

    sessions = {"adapter": session(True), "base": session(False)}
    shapes = sorted((DATA / "shapes").glob("*.png"))
    monkeypatch.setenv("XDG_CACHE_HOME", env["XDG_CACHE_HOME"])  # the codes training encoded
    targets = encode_targets(sessions["base"], shapes, lambda *a: None)
    figures = {}
    for image, target in zip(shapes, targets, strict=True):
        prompt = image.with_suffix(".txt").read_text().strip()
        for name, s in sessions.items():
            ids = prompt_ids(s, prompt)
            sampler = make_sampler(0.0, None, None, [make_generator(0)])
            steps = generate_image_tokens(
                s.model, [ids], [make_uncond_ids(ids, tok.special.pad)], [0], 1.0, sampler, 576
            )
            codes = torch.stack(list(steps), dim=1)  # (1, 576)
            figures[image.stem, name] = (codes[0] == target).float().mean().item()
            if name == "adapter" and image.stem == "square":
                square = to_uint8(s.model.decode_codes(codes))[0]
    print("code match (adapter, base):", {k: round(v, 4) for k, v in figures.items()})
    for image in shapes:
        assert figures[image.stem, "adapter"] >= 0.95 and figures[image.stem, "base"] < 0.5, figures

    out = tmp_path / "square.png"
    r = run_janus(
        "generate",
        (DATA / "shapes" / "square.txt").read_text().strip(),
        "-m",
        str(folder),
        "--adapter",
        str(generate_adapter),
        "--temperature",
        "0",
        "--cfg",
        "1",
        "--seed",
        "0",
        "-o",
        str(out),
        "-q",
        *TINY,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    # the same codes; the pixels within a level where this process's thread count rounds otherwise
    assert_uint8_close(torch.from_numpy(np.array(Image.open(out))), torch.from_numpy(square))


def test_lora_starts_as_the_base_and_merges_to_its_delta():
    """A fresh LoRALinear computes the base linear; after training steps, the base weight plus
    delta() computes what the wrapped module does (what merging writes); dropout draws the same
    mask for the same seed (gradient checkpointing recomputes it)."""
    import torch

    from janus_cli.training.lora import LoRALinear, train_in_fp32

    g = torch.Generator().manual_seed(0)
    base = torch.nn.Linear(12, 20, bias=False)
    lora = LoRALinear(base, rank=4, alpha=8, dropout=0.5, index=0)
    lora.reset(g)
    x = torch.randn(3, 5, 12, generator=g)
    assert torch.equal(lora(x), base(x))
    with torch.no_grad():
        lora.lora_B.normal_(generator=g)
    lora.eval()
    merged = torch.nn.functional.linear(x, base.weight + lora.delta())
    torch.testing.assert_close(lora(x), merged, rtol=1e-5, atol=1e-5)
    lora.train()
    lora.seed = 7
    assert torch.equal(lora(x), lora(x)) and not torch.equal(lora(x), merged)

    head = train_in_fp32(torch.nn.Linear(4, 3).to(torch.bfloat16), torch.bfloat16)
    out = head(torch.randn(2, 4, dtype=torch.bfloat16))
    assert head.weight.dtype == torch.float32 and out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert head.weight.grad is not None
