"""Each command loads what it reads: describe no image decoder, the image commands no vision
encoder, and the left-out tensors are still checked against the config."""

import functools
import shutil

import pytest
import torch
from conftest import checkpoint_dir, image_path
from typer.testing import CliRunner

from janus_cli.checkpoints.load import load_model
from janus_cli.cli import app, console
from janus_cli.errors import CheckpointError, InputError


def parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def attr(model, path: str):
    """MODEL's submodule or parameter at a dotted PATH."""
    return functools.reduce(getattr, path.split("."), model)


def size(x) -> int:
    return x.numel() if isinstance(x, torch.Tensor) else parameters(x)


@pytest.mark.parametrize("name", ["janus-pro-1b-tiny", "janusflow-1.3b-tiny"])
def test_a_part_leaves_the_others_modules_out(name):
    folder = checkpoint_dir(name)
    whole = load_model(folder, torch.float32)
    for part, other in (("understanding", "generation"), ("generation", "understanding")):
        model = load_model(folder, torch.float32, parts=(part,))
        assert all(attr(model, m) is None for m in model.PARTS[other])
        assert all(attr(model, m) is not None for m in model.PARTS[part])
        assert parameters(model) == parameters(whole) - sum(size(attr(whole, m)) for m in whole.PARTS[other])
    with pytest.raises(ValueError, match="unknown parts"):
        load_model(folder, torch.float32, parts=("dreaming",))


def test_a_part_loads_the_very_tensors_a_whole_load_does():
    """What a part keeps is loaded exactly as in a whole load (the CLI's golden tests then run
    describe and generate on parts)."""
    folder = checkpoint_dir("janus-pro-1b-tiny")
    whole = load_model(folder, torch.float32).state_dict()
    for parts in (console.GENERATION, console.UNDERSTANDING):
        kept = load_model(folder, torch.float32, parts=parts).state_dict()
        assert kept.keys() < whole.keys()
        assert all(torch.equal(t, whole[k]) for k, t in kept.items())


def test_a_broken_tensor_in_a_left_out_part_is_still_an_error(tmp_path):
    """The understanding tower of a generate run is never read, but a checkpoint whose tensor
    contradicts the config is refused all the same (the check reads shapes only)."""
    from safetensors.torch import save_file

    from janus_cli.checkpoints.read import read_state_dict

    src = checkpoint_dir("janus-pro-1b-tiny")
    state = read_state_dict(src)
    key = "vision_model.vision_tower.blocks.0.mlp.fc1.weight"
    state[key] = state[key][:-1].clone()  # one row short
    folder = tmp_path / "ckpt"
    shutil.copytree(src, folder, ignore=shutil.ignore_patterns("*.bin", "*.index.json"))
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=f"shape mismatch for {key}"):
        load_model(folder, torch.float32, parts=("generation",))


@pytest.mark.parametrize(
    "argv,parts",
    [
        (["describe", str(image_path("square0.png"))], console.UNDERSTANDING),
        (["generate", "a cat"], console.GENERATION),
        (["flow-generate", "a cat"], console.GENERATION),
    ],
)
def test_each_command_asks_for_its_parts(monkeypatch, tmp_path, argv, parts):
    seen = []

    def open_model(*args, **kwargs):
        seen.append(kwargs.get("parts", args[7] if len(args) > 7 else None))
        raise InputError("stop here")

    monkeypatch.setattr(console, "open_model", open_model)
    result = CliRunner().invoke(
        app,
        [*argv, "-m", str(tmp_path), "-o", str(tmp_path)]
        if argv[0] != "describe"
        else [*argv, "-m", str(tmp_path)],
    )
    assert "stop here" in result.output + (result.stderr or "")
    assert seen == [parts]


def test_models_are_built_without_random_init_and_torch_init_comes_back():
    """build_model skips torch.nn.init inside (its first call on meta costs a second of every
    command) and restores it afterwards, also after an error."""
    from torch import nn

    from janus_cli.checkpoints.load import skipped_init

    before = {k: v for k, v in vars(nn.init).items() if callable(v)}
    with pytest.raises(RuntimeError), skipped_init():
        zeros = torch.zeros(3)
        assert nn.init.ones_(zeros) is zeros and zeros.sum() == 0
        linear = nn.Linear(2, 2, bias=False, device="meta")
        assert linear.weight.is_meta
        raise RuntimeError
    assert all(vars(nn.init)[k] is v for k, v in before.items())
    assert nn.init.ones_(torch.zeros(3)).sum() == 3
