"""SDXL-VAE decoder: parity with diffusers goldens (on JANUS_TEST_DEVICE), old attention names,
loader errors."""

from __future__ import annotations

import shutil

import pytest
import torch
from conftest import assert_close, checkpoint_dir, golden_tensors, on_device, test_device, vae_full_dir
from safetensors.torch import save_file

from janus_cli.checkpoints.read import read_state_dict
from janus_cli.checkpoints.vae import load_vae, vae_config
from janus_cli.errors import CheckpointError, InputError

TINY = "janusflow-1.3b-tiny-vae"


@pytest.fixture(scope="module")
def tiny_dir():
    return checkpoint_dir(TINY)


@pytest.fixture(scope="module")
def flow_goldens() -> dict:
    return on_device(golden_tensors("janusflow-1.3b-tiny"))


def _copy_with(src, dst, state: dict) -> None:
    """A VAE folder at DST with SRC's config and STATE as its weights."""
    dst.mkdir()
    shutil.copy(src / "config.json", dst / "config.json")
    state = {k: v.contiguous() for k, v in state.items()}
    save_file(state, str(dst / "diffusion_pytorch_model.safetensors"))


@pytest.mark.slow
@torch.inference_mode()
def test_full_size_matches_diffusers():
    golden = on_device(golden_tensors("sdxl_vae_full"))
    vae = load_vae(vae_full_dir(), dtype=torch.float32, device=test_device())
    assert vae.cfg.block_out_channels == (128, 256, 512, 512)
    assert_close(vae.decode(golden["sdxl_vae.latent"]), golden["sdxl_vae.decoded"], rel=1e-3)


@pytest.mark.parametrize("steps", [5, 30])
@torch.inference_mode()
def test_tiny_matches_diffusers(tiny_dir, flow_goldens, steps):
    vae = load_vae(tiny_dir, dtype=torch.float32, device=test_device())
    out = vae.decode(flow_goldens[f"generate.z_after_{steps}_steps"])
    assert out.shape == (2, 3, 384, 384)
    assert_close(out, flow_goldens[f"generate.vae_decoded_{steps}_steps"], rel=1e-3)


@torch.inference_mode()
def test_old_attention_names_load_identically(tiny_dir, tmp_path):
    new_to_old = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    state = {}
    for key, t in read_state_dict(tiny_dir).items():
        for new, old in new_to_old.items():
            if f".attentions.0.{new}." in key:
                key = key.replace(f".{new}.", f".{old}.")
                t = t[:, :, None, None] if t.ndim == 2 else t  # old files: 1x1 conv weights
        state[key] = t
    assert "decoder.mid_block.attentions.0.proj_attn.weight" in state
    _copy_with(tiny_dir, tmp_path / "old", state)
    z = torch.randn(1, 4, 6, 6, generator=torch.Generator().manual_seed(0))
    expected = load_vae(tiny_dir).decode(z)
    assert torch.equal(load_vae(tmp_path / "old").decode(z), expected)


def test_bf16_weights_load_in_both_dtypes(tiny_dir):
    for dtype in (torch.bfloat16, torch.float32):
        vae = load_vae(tiny_dir, dtype=dtype)
        assert {p.dtype for p in vae.parameters()} == {dtype}
        assert not any(p.requires_grad for p in vae.parameters())


def test_missing_key_is_reported(tiny_dir, tmp_path):
    state = read_state_dict(tiny_dir)
    del state["decoder.conv_out.bias"]
    _copy_with(tiny_dir, tmp_path / "broken", state)
    with pytest.raises(CheckpointError, match=r"missing 1 tensors: decoder\.conv_out\.bias"):
        load_vae(tmp_path / "broken")


def test_float16_is_refused(tiny_dir):
    with pytest.raises(InputError, match="float16.*use bfloat16 or float32"):
        load_vae(tiny_dir, dtype=torch.float16)


def test_config_must_be_autoencoderkl():
    good = {
        "_class_name": "AutoencoderKL",
        "act_fn": "silu",
        "block_out_channels": [32, 64],
        "layers_per_block": 1,
        "latent_channels": 4,
        "norm_num_groups": 32,
        "out_channels": 3,
        "scaling_factor": 0.13025,
    }
    assert vae_config(good).block_out_channels == (32, 64)
    for bad in ({"_class_name": "AutoencoderTiny"}, {"act_fn": "gelu"}, {"shift_factor": 0.1}):
        with pytest.raises(CheckpointError):
            vae_config({**good, **bad})
    with pytest.raises(CheckpointError, match="scaling_factor"):
        vae_config({k: v for k, v in good.items() if k != "scaling_factor"})
