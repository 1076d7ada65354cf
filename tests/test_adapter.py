"""The adapter format (checkpoints/adapter.py): PEFT files, both key layouts, strict refusals, and
the merge W += (alpha / r) B A, on a toy model shaped like Janus's names."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from janus_cli.checkpoints.adapter import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    AdapterConfig,
    apply_adapter,
    read_adapter,
    write_adapter,
)
from janus_cli.errors import CheckpointError, InputError

K, N, R = 6, 4, 2
Q = "language_model.model.layers.0.self_attn.q_proj"
DOWN = "language_model.model.layers.0.mlp.down_proj"


def toy_model() -> nn.Module:
    """language_model.model.layers.0.{self_attn.q_proj, mlp.down_proj} and gen_head.*."""
    g = torch.Generator().manual_seed(0)
    layer = nn.Module()
    layer.self_attn, layer.mlp = nn.Module(), nn.Module()
    layer.self_attn.q_proj = nn.Linear(K, N, bias=False)
    layer.mlp.down_proj = nn.Linear(N, K, bias=False)
    model = nn.Module()
    model.language_model = nn.Module()
    model.language_model.model = nn.Module()
    model.language_model.model.layers = nn.ModuleList([layer])
    model.gen_head = nn.Module()
    model.gen_head.output_mlp_projector = nn.Linear(K, K)
    for p in model.parameters():
        p.data = torch.randn(p.shape, generator=g)
    return model


def toy_tensors(seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        f"{Q}.lora_A.weight": torch.randn(R, K, generator=g),
        f"{Q}.lora_B.weight": torch.randn(N, R, generator=g),
        f"{DOWN}.lora_A.weight": torch.randn(R, N, generator=g),
        f"{DOWN}.lora_B.weight": torch.randn(K, R, generator=g),
        "gen_head.output_mlp_projector.weight": torch.randn(K, K, generator=g),
        "gen_head.output_mlp_projector.bias": torch.randn(K, generator=g),
    }


CONFIG = AdapterConfig(
    r=R, lora_alpha=8, modules_to_save=("gen_head",), base_model_name_or_path="x", janus={"task": "generate"}
)


def test_round_trip_in_published_names(tmp_path):
    tensors = toy_tensors()
    folder = write_adapter(tmp_path / "style", CONFIG, tensors)
    stored = load_file(str(folder / WEIGHTS_FILE))
    assert f"base_model.model.{Q}.lora_A.weight" in stored
    assert "base_model.model.gen_head.output_mlp_projector.bias" in stored
    config = json.loads((folder / CONFIG_FILE).read_text())
    assert config["peft_type"] == "LORA" and config["r"] == R and config["lora_alpha"] == 8
    assert config["modules_to_save"] == ["gen_head"] and config["janus"] == {"task": "generate"}
    assert config["bias"] == "none" and config["task_type"] is None
    back = read_adapter(folder)
    assert back.name == "style" and back.config == CONFIG
    assert set(back.tensors) == set(tensors)
    assert all(torch.equal(back.tensors[k], t) for k, t in tensors.items())
    assert set(back.lora) == {Q, DOWN}
    assert len(back.digest) == 64 and back.digest == read_adapter(folder).digest
    other = write_adapter(tmp_path / "other", CONFIG, toy_tensors(seed=2))
    assert read_adapter(other).digest != back.digest


def test_never_overwrites_unless_asked(tmp_path):
    folder = write_adapter(tmp_path / "a", CONFIG, toy_tensors())
    with pytest.raises(InputError, match="already holds an adapter"):
        write_adapter(folder, CONFIG, toy_tensors(seed=2))
    write_adapter(folder, CONFIG, toy_tensors(seed=2), overwrite=True)
    assert torch.equal(
        read_adapter(folder).tensors[f"{Q}.lora_A.weight"], toy_tensors(seed=2)[f"{Q}.lora_A.weight"]
    )
    (tmp_path / "empty").mkdir()  # an existing empty folder (a training run's output) is fine
    write_adapter(tmp_path / "empty", CONFIG, toy_tensors())
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporaries left


def test_transformers_layout_reads_as_the_same_adapter(tmp_path):
    published = read_adapter(write_adapter(tmp_path / "pub", CONFIG, toy_tensors()))
    hf = tmp_path / "hf"
    hf.mkdir()
    renamed = {
        "base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.weight": f"{Q}.lora_A.weight",
        "base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_B.weight": f"{Q}.lora_B.weight",
        "base_model.model.model.language_model.layers.0.mlp.down_proj.lora_A.weight": f"{DOWN}.lora_A.weight",
        "base_model.model.model.language_model.layers.0.mlp.down_proj.lora_B.weight": f"{DOWN}.lora_B.weight",
        "base_model.model.model.generation_head.proj_out.weight": "gen_head.output_mlp_projector.weight",
        "base_model.model.model.generation_head.proj_out.bias": "gen_head.output_mlp_projector.bias",
    }
    save_file({hf_key: published.tensors[ours] for hf_key, ours in renamed.items()}, str(hf / WEIGHTS_FILE))
    (hf / CONFIG_FILE).write_text(
        json.dumps({**CONFIG.to_json(), "modules_to_save": ["model.generation_head"]})
    )
    back = read_adapter(hf)
    assert back.config.modules_to_save == ("gen_head",)
    assert set(back.tensors) == set(published.tensors) and back.digest == published.digest


def _write_raw(folder, tensors: dict, config: dict | None = None):
    folder.mkdir(exist_ok=True)
    save_file(tensors, str(folder / WEIGHTS_FILE))
    (folder / CONFIG_FILE).write_text(json.dumps(config or CONFIG.to_json()))
    return folder


@pytest.mark.parametrize(
    "change, needle",
    [
        (lambda t, c: t.pop(f"base_model.model.{Q}.lora_B.weight"), "has no lora_B"),
        (lambda t, c: t.pop(f"base_model.model.{Q}.lora_A.weight"), "has no lora_A"),
        (
            lambda t, c: t.update({f"base_model.model.{Q}.lora_A.weight": torch.zeros(R + 1, K)}),
            "not rank r=2",
        ),
        (
            lambda t, c: t.update({"base_model.model.vision_model.x.weight": torch.zeros(2)}),
            "unexpected tensor",
        ),
        (
            lambda t, c: t.update({"base_model.model.model.nonsense.weight": torch.zeros(2)}),
            "unknown transformers",
        ),
        (
            lambda t, c: t.update({"model.layers.0.q_proj.lora_A.weight": torch.zeros(2)}),
            "not a PEFT adapter",
        ),
        (lambda t, c: c.update({"peft_type": "IA3"}), "only LORA"),
        (lambda t, c: c.update({"r": 0}), "positive integer"),
        (lambda t, c: c.update({"use_dora": True}), "use_dora"),
        (lambda t, c: c.update({"target_modules": ["k_proj"]}), "target_modules does not name"),
    ],
)
def test_strict_errors_are_one_line(tmp_path, change, needle):
    tensors = {f"base_model.model.{k}": v for k, v in toy_tensors().items()}
    config = CONFIG.to_json()
    change(tensors, config)
    with pytest.raises(CheckpointError, match=needle) as e:
        read_adapter(_write_raw(tmp_path / "bad", tensors, config))
    assert "\n" not in str(e.value)


def test_missing_files_and_pickles_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no such adapter folder"):
        read_adapter(tmp_path / "nowhere")
    (tmp_path / "pickled").mkdir()
    torch.save({"a": torch.zeros(1)}, tmp_path / "pickled" / "adapter_model.bin")
    with pytest.raises(CheckpointError, match="pickle and is refused"):
        read_adapter(tmp_path / "pickled")
    folder = write_adapter(tmp_path / "ok", CONFIG, toy_tensors())
    (folder / CONFIG_FILE).unlink()
    with pytest.raises(CheckpointError, match="no adapter_config.json"):
        read_adapter(folder)


def test_merge_matches_a_hand_computation(tmp_path):
    model, tensors = toy_model(), toy_tensors()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    apply_adapter(model, read_adapter(write_adapter(tmp_path / "a", CONFIG, tensors)))
    scale = 8 / R
    for module in (Q, DOWN):
        a, b = tensors[f"{module}.lora_A.weight"], tensors[f"{module}.lora_B.weight"]
        w = before[f"{module}.weight"]
        by_hand = torch.tensor(
            [[w[i, j].item() + scale * sum(b[i, k] * a[k, j] for k in range(R)) for j in range(w.shape[1])]
             for i in range(w.shape[0])]
        )  # fmt: skip
        torch.testing.assert_close(model.get_submodule(module).weight, by_hand, rtol=0, atol=1e-5)
    head = model.gen_head.output_mlp_projector
    assert torch.equal(head.weight, tensors["gen_head.output_mlp_projector.weight"])
    assert torch.equal(head.bias, tensors["gen_head.output_mlp_projector.bias"])


def test_merge_in_bf16_rounds_once_from_fp32(tmp_path):
    model = toy_model().to(torch.bfloat16)
    w = model.get_submodule(Q).weight.clone()
    tensors = toy_tensors()
    apply_adapter(model, read_adapter(write_adapter(tmp_path / "a", CONFIG, tensors)))
    delta = tensors[f"{Q}.lora_B.weight"] @ tensors[f"{Q}.lora_A.weight"]
    assert torch.equal(model.get_submodule(Q).weight, (w.float() + 4 * delta).to(torch.bfloat16))


def test_merge_refuses_another_models_adapter(tmp_path):
    tensors = toy_tensors()
    tensors[f"{Q}.lora_A.weight"] = torch.zeros(R, K + 1)
    with pytest.raises(CheckpointError, match="made for another model"):
        apply_adapter(toy_model(), read_adapter(write_adapter(tmp_path / "a", CONFIG, tensors)))
    tensors = toy_tensors()
    tensors["language_model.model.layers.7.self_attn.q_proj.lora_A.weight"] = torch.zeros(R, K)
    tensors["language_model.model.layers.7.self_attn.q_proj.lora_B.weight"] = torch.zeros(N, R)
    with pytest.raises(CheckpointError, match="has no module language_model.model.layers.7"):
        apply_adapter(toy_model(), read_adapter(write_adapter(tmp_path / "b", CONFIG, tensors)))


def test_left_out_parts_are_skipped(tmp_path):
    model = toy_model()
    model.gen_head = None  # a session for understanding does not load the image head
    apply_adapter(model, read_adapter(write_adapter(tmp_path / "a", CONFIG, toy_tensors())))
