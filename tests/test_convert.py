"""`janus convert`: .bin, sharded .bin and transformers-layout checkpoints to verified safetensors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import checkpoint_dir
from safetensors.torch import save_file

from janus_cli.checkpoints import convert as convert_mod
from janus_cli.checkpoints.convert import convert, parse_size
from janus_cli.checkpoints.load import load_model
from janus_cli.checkpoints.read import read_state_dict, weight_files
from janus_cli.checkpoints.transformers_layout import map_key, published_tensors, to_multi_modality
from janus_cli.config import JanusConfig
from janus_cli.errors import CheckpointError, InputError

PUBLISHED = Path(__file__).parents[1] / "weights" / "published"


def assert_same_model(a: Path, b: Path, dtype: torch.dtype = torch.bfloat16) -> None:
    sa, sb = load_model(a, dtype=dtype).state_dict(), load_model(b, dtype=dtype).state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa), "parameters differ"


def test_bin_to_single_safetensors(tmp_path):
    src, dst = checkpoint_dir("janus-pro-1b-tiny"), tmp_path / "out"
    result = convert(src, dst)
    assert result.files == ("model.safetensors",) and result.layout == "published"
    assert [f.name for f in weight_files(dst)] == ["model.safetensors"]
    names = {p.name for p in dst.iterdir()}
    assert {
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "preprocessor_config.json",
        "processor_config.json",
    } <= names
    assert (dst / "config.json").read_bytes() == (src / "config.json").read_bytes()
    assert [p for p in tmp_path.iterdir() if p.name != "out"] == [], "temporary folder left behind"
    # every tensor, the unused ones included, bit for bit (safetensors lists keys sorted)
    out, ref = read_state_dict(dst), read_state_dict(src)
    assert set(out) == set(ref) and all(torch.equal(out[k], ref[k]) for k in ref)
    assert_same_model(dst, src)


def test_sharded_bin_to_sharded_safetensors(tmp_path):
    src, dst = checkpoint_dir("janus-pro-7b-tiny"), tmp_path / "out"
    result = convert(src, dst, max_shard_bytes=parse_size("200MB"))
    assert len(result.files) > 1 and result.files[0] == f"model-00001-of-{len(result.files):05d}.safetensors"
    index = json.loads((dst / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == set(result.files)
    assert index["metadata"]["total_size"] == result.bytes
    assert all((dst / f).stat().st_size < 200e6 + 1e6 for f in result.files)
    assert_same_model(dst, src)


def test_non_empty_destination_refused_then_overwritten(tmp_path):
    src, dst = checkpoint_dir("janus-1.3b-tiny"), tmp_path / "out"
    dst.mkdir()
    (dst / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        convert(src, dst)
    assert (dst / "keep.txt").exists()
    with pytest.raises(InputError, match="overlap"):
        convert(src, src / "sub")
    convert(src, dst, overwrite=True, dtype=torch.float32)
    assert not (dst / "keep.txt").exists()
    out = read_state_dict(dst)
    assert all(t.dtype == torch.float32 for t in out.values())
    assert json.loads((dst / "config.json").read_text())["torch_dtype"] == "float32"
    assert_same_model(dst, src, dtype=torch.float32)


def test_interrupted_convert_leaves_nothing(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(convert_mod, "_verify", boom)
    with pytest.raises(KeyboardInterrupt):
        convert(checkpoint_dir("janus-1.3b-tiny"), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "text, n", [("5GB", 5 * 10**9), ("200MB", 2 * 10**8), ("2GiB", 2 * 2**30), ("1000", 1000)]
)
def test_parse_size(text, n):
    assert parse_size(text) == n


def test_parse_size_rejects_nonsense():
    with pytest.raises(InputError):
        parse_size("lots")


# --- the transformers port (deepseek-community/*) ---------------------------------------------

_SIMPLE = {
    "aligner.layers.0.": "model.aligner.fc1.",
    "aligner.layers.2.": "model.aligner.hidden_layers.0.",
    "gen_aligner.layers.0.": "model.generation_aligner.fc1.",
    "gen_aligner.layers.2.": "model.generation_aligner.hidden_layers.0.",
    "gen_head.output_mlp_projector.": "model.generation_head.proj_out.",
    "gen_head.vision_head.": "model.generation_head.vision_head.",
    "gen_embed.": "model.generation_embeddings.",
    "language_model.model.": "model.language_model.",
    "language_model.lm_head.": "lm_head.",
}


def to_transformers(key: str, t: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """Spec §3.3, forwards: what transformers' conversion script makes of one published tensor."""
    if ".attn_pool." in key or key.endswith("codebook_used"):
        return []
    if key.startswith("vision_model.vision_tower."):
        rest = key.removeprefix("vision_model.vision_tower.")
        if rest == "pos_embed":
            return [("model.vision_model.embeddings.position_embedding.weight", t.squeeze(0))]
        rest = re.sub(
            r"^norm\.", "post_layernorm.", rest.replace("patch_embed.proj", "embeddings.patch_embedding")
        )
        rest = re.sub(r"^blocks\.(\d+)\.", r"encoder.layers.\1.", rest)
        rest = (
            rest.replace(".attn.proj.", ".self_attn.projection_layer.")
            .replace(".norm1.", ".layer_norm1.")
            .replace(".norm2.", ".layer_norm2.")
        )
        if ".attn.qkv." in rest:
            return [
                ("model.vision_model." + rest.replace("attn.qkv", f"self_attn.{p}_proj"), x.clone())
                for p, x in zip("qkv", t.chunk(3), strict=True)
            ]
        return [("model.vision_model." + rest, t)]
    if key.startswith("gen_vision_model."):
        rest = (
            key.removeprefix("gen_vision_model.")
            .replace("encoder.conv_blocks", "encoder.down")
            .replace("decoder.conv_blocks", "decoder.up")
        )
        rest = (
            rest.replace(".res.", ".block.")
            .replace("mid.0.", "mid.block_1.")
            .replace("mid.1.", "mid.attn_1.")
            .replace("mid.2.", "mid.block_2.")
        )
        return [("model.vqmodel." + rest, t)]
    prefix = next(p for p in sorted(_SIMPLE, key=len, reverse=True) if key.startswith(p))
    return [(_SIMPLE[prefix] + key.removeprefix(prefix), t)]


def transformers_config(
    hidden: int, inter: int, layers: int, heads: int, vocab: int, sparse: bool = False
) -> dict:
    text = {
        "model_type": "llama",
        "num_hidden_layers": layers,
        "vocab_size": vocab,
        "max_position_embeddings": 16384,
    }
    if not sparse:  # transformers omits LlamaConfig defaults (the 7B case)
        text.update(
            hidden_size=hidden, intermediate_size=inter, num_attention_heads=heads, num_key_value_heads=heads
        )
    return {
        "model_type": "janus",
        "architectures": ["JanusForConditionalGeneration"],
        "torch_dtype": "bfloat16",
        "text_config": text,
        "vision_config": {
            "model_type": "janus_vision_model",
            "hidden_size": 1024,
            "num_hidden_layers": 24,
            "image_size": 384,
            "patch_size": 16,
            "projection_dim": hidden,
            "depth": 2,
            "select_layer": -1,
        },
        "vq_config": {
            "model_type": "janus_vqgan",
            "embed_dim": 8,
            "num_embeddings": 16384,
            "projection_dim": hidden,
            "image_token_embed_dim": hidden,
            "depth": 2,
        },
    }


@pytest.mark.parametrize(
    "name, args",
    [
        ("Janus-Pro-1B", (2048, 5632, 24, 16, 102400, False)),
        ("Janus-Pro-7B", (4096, 11008, 30, 32, 102400, True)),
    ],
)
def test_transformers_config_maps_back_to_the_published_one(name, args):
    back = JanusConfig.from_dict(to_multi_modality(transformers_config(*args)))
    assert back == JanusConfig.from_file(PUBLISHED / name / "config.json")


def test_transformers_checkpoint_converts_back(tmp_path):
    src = checkpoint_dir("janus-pro-1b-tiny")
    hf = tmp_path / "hf"
    hf.mkdir()
    items = [kv for key, t in read_state_dict(src).items() for kv in to_transformers(key, t)]
    half = len(items) // 2
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    for name, part in zip(names, (items[:half], items[half:]), strict=True):
        save_file(dict(part), str(hf / name))
    weight_map = {k: names[i >= half] for i, (k, _) in enumerate(items)}
    (hf / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (hf / "config.json").write_text(json.dumps(transformers_config(64, 176, 2, 4, 1280)))
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (hf / f).write_bytes((src / f).read_bytes())
    (hf / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "size": {"height": 384, "width": 384},
                "image_mean": [0.5] * 3,
                "image_std": [0.5] * 3,
                "do_normalize": True,
            }
        )
    )

    result = convert(hf, tmp_path / "out")
    out = tmp_path / "out"
    assert result.layout == "transformers"
    assert JanusConfig.from_file(out / "config.json") == JanusConfig.from_file(src / "config.json")
    assert json.loads((out / "preprocessor_config.json").read_text())["image_size"] == 384
    ref, got = read_state_dict(src), read_state_dict(out)
    assert set(got) == {k for k in ref if ".attn_pool." not in k and not k.endswith("codebook_used")}
    assert all(torch.equal(got[k], ref[k]) for k in got), "a tensor did not survive the round trip"
    assert_same_model(out, src)


def test_unknown_transformers_key_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="unknown tensor 'model.vision_model.head.weight'"):
        map_key("model.vision_model.head.weight")
    save_file(
        {"lm_head.weight": torch.zeros(2, 2), "model.mystery.weight": torch.zeros(2)},
        str(tmp_path / "model.safetensors"),
    )
    with pytest.raises(CheckpointError, match=f"{tmp_path}: unknown tensor 'model.mystery.weight'"):
        list(published_tensors(tmp_path))


def test_cli_convert(tmp_path):
    src, dst = checkpoint_dir("janus-1.3b-tiny"), tmp_path / "out"
    env = {**os.environ, "COLUMNS": "400"}
    cmd = [
        sys.executable,
        "-m",
        "janus_cli",
        "convert",
        str(src),
        str(dst),
        "--max-shard-size",
        "300MB",
        "--json",
        "-q",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["path"] == str(dst) and len(doc["files"]) == 3 and doc["source_layout"] == "published"
    assert_same_model(dst, src)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and r.stdout == "" and len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ") and "--overwrite" in lines[0] and "Traceback" not in r.stderr
