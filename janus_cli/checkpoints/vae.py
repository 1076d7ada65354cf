"""Load a diffusers `AutoencoderKL` folder (the SDXL VAE) into `models.vae.VAEDecoder`.

`config.json` is parsed into a `VAEConfig`; the weights load strictly, minus the encoder half
(decoding never uses it), accepting the old attention names (`query/key/value/proj_attn`,
stored as 1x1 convs) of older files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from janus_cli.checkpoints.read import read_state_dict
from janus_cli.checkpoints.strict import load_strict
from janus_cli.config import read_json
from janus_cli.errors import CheckpointError, InputError
from janus_cli.models.vae import VAEConfig, VAEDecoder


def vae_config(d: dict[str, Any], where: str = "config.json") -> VAEConfig:
    """Parse and check D, the parsed `config.json` at WHERE (named in errors).

    Raises:
        CheckpointError: not a SiLU AutoencoderKL without latent shift, or a malformed field.
    """
    if d.get("_class_name") != "AutoencoderKL" or d.get("act_fn", "silu") != "silu":
        raise CheckpointError(
            f"{where}: expected a diffusers AutoencoderKL with act_fn silu, got "
            f"{d.get('_class_name')!r} / {d.get('act_fn')!r}"
        )
    if d.get("shift_factor") is not None:
        raise CheckpointError(f"{where}: shift_factor is set; this is not the SDXL VAE")
    try:
        return VAEConfig(
            block_out_channels=tuple(int(c) for c in d["block_out_channels"]),
            layers_per_block=int(d["layers_per_block"]),
            latent_channels=int(d["latent_channels"]),
            norm_num_groups=int(d["norm_num_groups"]),
            out_channels=int(d["out_channels"]),
            scaling_factor=float(d["scaling_factor"]),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: missing or malformed field {e}") from None


_OLD_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def vae_key_to_param(key: str) -> str | None:
    """Checkpoint key -> parameter name; None for the encoder half, which decoding never uses."""
    if key.startswith(("encoder.", "quant_conv.")):
        return None
    module, _, leaf = key.rpartition(".")  # e.g. decoder.mid_block.attentions.0.query / weight
    parent, _, name = module.rpartition(".")
    if ".attentions." in key and name in _OLD_ATTENTION:
        return f"{parent}.{_OLD_ATTENTION[name]}.{leaf}"
    return key


def load_vae(
    folder: Path, *, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> VAEDecoder:
    """Build the decoder on the meta device and strictly load a diffusers VAE folder into it.

    Args:
        folder: holds `config.json` and `diffusion_pytorch_model.safetensors` (bf16 or fp32).
        dtype: compute dtype, bfloat16 or float32.
        device: where the weights go.
    Returns:
        The decoder in eval mode, gradients off.
    Raises:
        InputError: dtype is float16, in which the SDXL VAE overflows.
        CheckpointError: bad config, or weights that do not match it.
    """
    if dtype == torch.float16:
        raise InputError("the SDXL VAE overflows in float16 (NaN images); use bfloat16 or float32")
    folder = Path(folder)
    cfg = vae_config(read_json(folder / "config.json"), where=str(folder / "config.json"))
    with torch.device("meta"):
        model = VAEDecoder(cfg)
    state = read_state_dict(folder)
    for k, t in state.items():
        if ".attentions." in k and t.ndim == 4:  # old files: 1x1 convs (C, C, 1, 1)
            state[k] = t.flatten(1)  # (C, C) for our Linear projections
    load_strict(model, state, where=str(folder), rename=vae_key_to_param, dtype=dtype, device=device)
    return model.eval().requires_grad_(False)
