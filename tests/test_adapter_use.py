"""Adapters used everywhere (issue 27 items 2-3, tests c and d), on the tiny Janus-Pro fixture with
a random adapter: key names are the published checkpoint's modules; `--adapter` and a `janus merge`
output give the same outputs (fp32, 1e-5) and differ from the base; the PNG recipe records the
adapter and `--from-image` re-makes with it, or says in one line what is wrong."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from conftest import assert_one_line_error, checkpoint_dir, image_path, run_janus
from safetensors.torch import load_file, save_file

import janus_cli
from janus_cli.checkpoints.adapter import (
    CONFIG_FILE,
    LORA_TARGETS,
    WEIGHTS_FILE,
    AdapterConfig,
    read_adapter,
    write_adapter,
)
from janus_cli.checkpoints.convert import convert
from janus_cli.checkpoints.read import read_state_dict
from janus_cli.prompts import generation_ids, make_uncond_ids
from janus_cli.sampling.autoregressive import generate_image_tokens

TINY = "janus-pro-1b-tiny"
PUBLISHED = Path(__file__).parents[1] / "weights" / "published" / "Janus-Pro-1B" / "manifest.json"


def random_adapter(folder: Path, seed: int = 0, rank: int = 4) -> Path:
    """LoRA on every q/k/v/o/gate/up/down of the tiny LLM, plus gen_head's projector trained
    whole, with deltas big enough to move the outputs."""
    g = torch.Generator().manual_seed(seed)
    base = read_state_dict(checkpoint_dir(TINY))
    tensors = {}
    for key, w in base.items():
        module = key.removesuffix(".weight")
        if key.startswith("language_model.model.layers.") and module.rsplit(".", 1)[-1] in LORA_TARGETS:
            n, k = w.shape
            tensors[f"{module}.lora_A.weight"] = torch.randn(rank, k, generator=g) / k**0.5
            tensors[f"{module}.lora_B.weight"] = torch.randn(n, rank, generator=g) * 0.05
    for key in [k for k in base if k.startswith("gen_head.")]:  # --train-head: the module whole
        tensors[key] = base[key].float() + 0.05 * torch.randn(base[key].shape, generator=g)
    config = AdapterConfig(r=rank, lora_alpha=8, modules_to_save=("gen_head",))
    return write_adapter(folder, config, tensors)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    adapter = random_adapter(root / "style")
    merged = convert(
        checkpoint_dir(TINY), root / "merged", dtype=torch.float32, adapter=read_adapter(adapter)
    )
    yield root, adapter, merged.folder
    shutil.rmtree(root)  # the merged checkpoint is 1.5 GB: kept to the session's end, it fills CI's disk


def test_keys_name_the_published_modules(made):
    _, adapter, _ = made
    published = {t["key"] for t in json.loads(PUBLISHED.read_text())["tensors"]}
    keys = load_file(str(adapter / WEIGHTS_FILE)).keys()
    assert keys and all(k.startswith("base_model.model.") for k in keys)
    for key in keys:
        name = key.removeprefix("base_model.model.")
        module = name.replace(".lora_A.weight", ".weight").replace(".lora_B.weight", ".weight")
        assert module in published, key
    assert "base_model.model.language_model.model.layers.0.self_attn.q_proj.lora_A.weight" in keys
    assert "base_model.model.gen_head.output_mlp_projector.weight" in keys


def to_transformers(name: str) -> str:
    """Our (published) name as transformers' JanusForConditionalGeneration names it."""
    if name.startswith("language_model.model."):
        return "model.language_model." + name.removeprefix("language_model.model.")
    return name.replace("gen_head.output_mlp_projector", "model.generation_head.proj_out").replace(
        "gen_head.vision_head", "model.generation_head.vision_head"
    )


def test_transformers_names_load_as_the_same_adapter(made, tmp_path):
    _, adapter, _ = made
    ours = read_adapter(adapter)
    hf = tmp_path / "hf-style"
    hf.mkdir()
    save_file(
        {f"base_model.model.{to_transformers(k)}": t for k, t in ours.tensors.items()}, str(hf / WEIGHTS_FILE)
    )
    config = json.loads((adapter / CONFIG_FILE).read_text())
    (hf / CONFIG_FILE).write_text(json.dumps({**config, "modules_to_save": ["model.generation_head"]}))
    theirs = read_adapter(hf)
    assert theirs.digest == ours.digest and theirs.tensors.keys() == ours.tensors.keys()


def cfg_logits(janus, prompt: str = "a red square", steps: int = 4) -> torch.Tensor:
    """Teacher-forced CFG image logits (steps, 1, V): the image path through the LLM and gen_head."""
    s = janus.session
    ids = generation_ids(s.tokenizer, prompt)
    seen = []

    def teacher(logits):
        seen.append(logits.clone())
        return torch.full((1,), 7 * len(seen), dtype=torch.long)

    list(
        generate_image_tokens(
            s.model, [ids], [make_uncond_ids(ids, s.tokenizer.special.pad)], [0], 5.0, teacher, steps
        )
    )
    s.model.language_model.free_cache()
    return torch.stack(seen)


def test_adapter_and_merged_checkpoint_give_the_same_outputs(made):
    _, adapter, merged = made
    load = dict(device="cpu", dtype="float32", parts=("generation",))
    with_adapter = janus_cli.load(str(checkpoint_dir(TINY)), adapter=adapter, **load)
    assert with_adapter.adapter == "style" and "adapter='style'" in repr(with_adapter)
    a = cfg_logits(with_adapter)
    b = cfg_logits(janus_cli.load(str(merged), **load))
    base = cfg_logits(janus_cli.load(str(checkpoint_dir(TINY)), **load))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert (a - base).abs().max() > 1e-2  # the adapter does change the outputs


def test_merged_checkpoint_is_the_base_plus_the_adapter(made, tmp_path):
    _, adapter, merged = made
    base = checkpoint_dir(TINY)
    for name in ("config.json", "tokenizer.json", "special_tokens_map.json", "preprocessor_config.json"):
        assert (merged / name).is_file() == (base / name).is_file()
    src, out = read_state_dict(base), read_state_dict(merged)
    assert out.keys() == src.keys()  # the same tensors, encoder and unused ones included
    assert torch.equal(
        out["gen_vision_model.encoder.conv_in.weight"], src["gen_vision_model.encoder.conv_in.weight"].float()
    )
    q = "language_model.model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(out[q], src[q].float())
    # bf16 by default, like the base; never over an existing folder unless asked
    result = run_janus("merge", "-m", str(base), "--adapter", str(adapter), "-o", str(merged), "-q")
    assert_one_line_error(result, "not empty")
    result = run_janus("merge", "-m", str(base), "--adapter", str(tmp_path), "-o", str(tmp_path / "x"), "-q")
    assert_one_line_error(result, "no adapter_model.safetensors")


def test_generate_records_the_adapter_and_from_image_remakes_with_it(made, tmp_path, monkeypatch):
    root, adapter, _ = made
    common = ("-m", str(checkpoint_dir(TINY)), "--device", "cpu", "--dtype", "float32", "-q")
    first = tmp_path / "a.png"
    result = run_janus(
        "generate",
        "a red square",
        "-t",
        "0",
        "--seed",
        "3",
        "--adapter",
        str(adapter),
        "-o",
        str(first),
        *common,
    )
    assert result.returncode == 0, result.stderr
    from PIL import Image

    recipe = json.loads(Image.open(first).info["janus-cli"])
    assert recipe["adapter"] == str(adapter.resolve()) and recipe["adapter_name"] == "style"
    assert recipe["adapter_sha256"] == read_adapter(adapter).digest

    # re-made with the recorded adapter (what runs the images is image_run.run: stop there)
    assert remade(first, monkeypatch).adapter == str(adapter.resolve())
    # the adapter moved: one line naming it
    moved = root / "moved"
    shutil.move(adapter, moved)
    try:
        assert re.search(
            r"^error: .* made with adapter style .* which is missing", remade(first, monkeypatch)
        )
        random_adapter(adapter, seed=1)  # another adapter at that path
        assert re.search(
            r"^error: .* made with adapter style .* now holds another", remade(first, monkeypatch)
        )
        shutil.rmtree(adapter)
    finally:
        shutil.move(moved, adapter)


def remade(png: Path, monkeypatch):
    """The image_run.Request `janus generate --from-image PNG` makes (run in-process, stopped
    before any loading), or the one line it fails with."""
    from typer.testing import CliRunner

    from janus_cli.cli import app, image_run

    seen = []
    monkeypatch.setattr(image_run, "run", seen.append)
    result = CliRunner().invoke(app, ["generate", "--from-image", str(png), "-o", str(png.parent / "b.png")])
    if seen:
        return seen[0]
    lines = (result.stderr or result.output).strip().splitlines()
    assert result.exit_code != 0 and len(lines) == 1, lines
    return lines[0]


def test_describe_records_the_adapter(made):
    _, adapter, _ = made
    result = run_janus(
        "describe", str(image_path("square0.png")), "-m", str(checkpoint_dir(TINY)), "--adapter",
        str(adapter), "--max-tokens", "3", "--json", "--device", "cpu", "--dtype", "float32", "-q",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout.splitlines()[0])
    assert record["adapter_name"] == "style" and record["adapter_sha256"] == read_adapter(adapter).digest


def test_a_bad_adapter_fails_before_loading_in_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    for command in (("generate", "x"), ("describe", str(image_path("square0.png")))):
        result = run_janus(
            *command, "-m", str(checkpoint_dir(TINY)), "--adapter", str(tmp_path / "empty"), "-q"
        )
        assert_one_line_error(result, "no adapter_model.safetensors")


def test_served_name_and_one_model_per_adapter(made):
    from janus_cli.server.loading import served_name

    _, adapter, _ = made
    assert served_name("janus-pro-1b", str(adapter)) == "janus-pro-1b+style"
    assert served_name("janus-pro-1b") == "janus-pro-1b"
    result = run_janus("serve", "-m", "janus-pro-1b", "-m", "janus-1.3b", "--adapter", str(adapter))
    assert_one_line_error(result, "--adapter applies to one model")


def test_ray_driver_checks_and_records_the_adapter(made):
    from janus_cli.distributed.cluster import ModelRef
    from janus_cli.distributed.image_job import ImageTask, light_session

    _, adapter, _ = made
    ref = ModelRef(str(checkpoint_dir(TINY)), "cpu", "float32", None, adapter=str(adapter.resolve()))
    session = light_session(ref, ImageTask("janus", "janus generate", None), quiet=True)
    assert session.adapter.digest == read_adapter(adapter).digest


def test_serve_and_ray_workers_load_the_adapter(made, monkeypatch):
    """What `janus serve --adapter` opens (its served id and recipes), what `janus serve --ray`
    hands its replicas, and what a Ray worker opens."""
    from janus_cli.cli.serve import _open
    from janus_cli.distributed.cluster import ModelRef, open_model
    from janus_cli.server.ray_app import Scaling, replica_specs

    _, adapter, _ = made
    served = _open(
        str(checkpoint_dir(TINY)),
        "tiny+style",
        "cpu",
        "float32",
        "none",
        "sdxl-vae",
        1,
        4,
        1,
        True,
        str(adapter),
    )
    digest = read_adapter(adapter).digest
    assert served.name == "tiny+style" and served.info().base["adapter_sha256"] == digest
    monkeypatch.chdir(adapter.parent)  # a relative --adapter reaches the replicas as an absolute path
    [spec] = replica_specs(
        [str(checkpoint_dir(TINY))], "cpu", "float32", "none", None, 1, 4, Scaling(), "style"
    )
    assert spec.name.endswith("+style") and spec.adapter == str(adapter.resolve())
    ref = ModelRef(
        str(checkpoint_dir(TINY)), "cpu", "float32", None, parts=("generation",), adapter=str(adapter)
    )
    assert open_model(ref, torch.get_num_threads()).session.adapter.digest == digest


def test_flow_generate_and_chat_pass_the_adapter_on(monkeypatch, tmp_path):
    """The commands without a test of their own here hand --adapter to what loads the model."""
    from typer.testing import CliRunner

    from janus_cli.cli import app, console, image_run

    requests, opened = [], []
    monkeypatch.setattr(image_run, "run", requests.append)

    def stop(*args, **kwargs):
        opened.append(kwargs.get("adapter"))
        raise KeyboardInterrupt

    monkeypatch.setattr(console, "open_model", stop)
    CliRunner().invoke(app, ["flow-generate", "a fox", "--adapter", "./style", "-o", str(tmp_path)])
    CliRunner().invoke(app, ["chat", "--adapter", "./style"], input="")
    assert [r.adapter for r in requests] == ["./style"] and opened == ["./style"]


def test_an_adapter_merges_into_the_float_weights_before_quantizing(made, tmp_path):
    """--adapter with --quantize: the LoRA deltas go into the float weights, which are then
    quantized, exactly as quantizing the `janus merge` output; a checkpoint stored quantized
    refuses an adapter in one line (its float weights are gone)."""
    _, adapter, merged = made
    load = dict(device="cpu", dtype="float32", parts=("generation",), quantize="int8")
    a = cfg_logits(janus_cli.load(str(checkpoint_dir(TINY)), adapter=adapter, **load))
    b = cfg_logits(janus_cli.load(str(merged), **load))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    base = cfg_logits(janus_cli.load(str(checkpoint_dir(TINY)), **load))
    assert (a - base).abs().max() > 1e-2

    q8 = tmp_path / "q8"
    assert (
        run_janus("convert", str(checkpoint_dir(TINY)), str(q8), "--quantize", "int8", "-q").returncode == 0
    )
    with pytest.raises(janus_cli.JanusError, match="quantized as int8: an adapter merges into float weights"):
        janus_cli.load(str(q8), device="cpu", dtype="float32", adapter=adapter)
    result = run_janus("merge", "-m", str(q8), "--adapter", str(adapter), "-o", str(tmp_path / "m"), "-q")
    assert_one_line_error(result, "quantized as int8")
