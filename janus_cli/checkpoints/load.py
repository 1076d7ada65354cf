"""Build a model on the meta device from `config.json` and load its weights strictly."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from janus_cli.checkpoints.quantized import linear_parts, scheme_to_load, stored_scheme
from janus_cli.checkpoints.read import read_state_dict
from janus_cli.checkpoints.strict import load_strict
from janus_cli.config import JanusConfig, read_json

# Tensors the published checkpoints carry that inference never reads. Everything else in a
# checkpoint must map onto a parameter, and every parameter must be in the checkpoint.
UNUSED_PREFIXES = (
    "vision_model.vision_tower.attn_pool.",  # SigLIP's pooling head: Janus uses all patches
    "vision_und_enc_model.vision_tower.attn_pool.",
    "gen_vision_model.quantize.codebook_used",  # training statistics buffer
)


def checkpoint_key_to_param(key: str) -> str | None:
    """The one key-mapping rule for published checkpoints: identity, minus unused tensors."""
    if key.startswith(UNUSED_PREFIXES) or key.endswith("rotary_emb.inv_freq"):
        return None
    return key


def build_model(cfg: JanusConfig) -> nn.Module:
    """The model for CFG with parameters on the meta device (no memory, no random init)."""
    with torch.device("meta"), skipped_init():
        if cfg.family == "janusflow":
            from janus_cli.models.janusflow import JanusFlowModel

            return JanusFlowModel(cfg)
        from janus_cli.models.janus import JanusModel

        return JanusModel(cfg)


@contextlib.contextmanager
def skipped_init() -> Iterator[None]:
    """Module constructors without their random init (torch.nn.init's in-place functions do
    nothing inside). On the meta device it computes nothing anyway, but its first call there
    loads PyTorch's Python decompositions: 1.1 s of every command's start."""
    # uniform_, kaiming_normal_, ...
    names = [n for n in vars(nn.init) if n.endswith("_") and not n.startswith("_")]
    saved = {n: getattr(nn.init, n) for n in names}
    for n in names:
        setattr(nn.init, n, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for n, f in saved.items():
            setattr(nn.init, n, f)


def left_out(model: nn.Module, parts: tuple[str, ...] | None) -> tuple[str, ...]:
    """The submodules of MODEL a load for PARTS leaves out (see load_model): those of the other
    parts, and when PARTS is None those of the parts loaded only on request (ON_REQUEST)."""
    on_request = getattr(model, "ON_REQUEST", ())
    wanted = [p for p in model.PARTS if p not in on_request] if parts is None else parts
    unknown = set(wanted) - set(model.PARTS)
    if unknown:
        raise ValueError(f"unknown parts {sorted(unknown)}; choose from {sorted(model.PARTS)}")
    return tuple(name for part, names in model.PARTS.items() if part not in wanted for name in names)


def load_model(
    folder: Path,
    dtype: torch.dtype,
    device: torch.device | str = "cpu",
    parts: tuple[str, ...] | None = None,
    quantize: str = "none",
) -> nn.Module:
    """Build the model of checkpoint FOLDER and load its weights, cast to DTYPE on DEVICE.

    PARTS: the kinds of work to load for ("understanding", "generation", and for training
    "encoding"; when None all but the model's ON_REQUEST parts). The submodules only other kinds
    read (the model's PARTS) are left out, set to None: their tensors are checked against the
    config like all others but never read, so `janus generate` does not load SigLIP, nor
    `janus describe` the image decoder, nor any command but training the VQ encoder.

    QUANTIZE: a scheme of models/quantize.py, or "none". The linears it quantizes are loaded,
    quantized and their checkpoint pages given back one at a time (strict.load_strict's swap),
    so loading Janus-Pro-7B as int4 never holds its bf16 weights. A quantized checkpoint
    (`janus convert --quantize`) loads as stored (checkpoints/quantized.py).
    """
    from janus_cli.models.quantize import quantize_linear, quantize_model

    folder = Path(folder)
    config = read_json(folder / "config.json")
    cfg = JanusConfig.from_dict(config)
    model = build_model(cfg)
    stored = stored_scheme(config)
    scheme = scheme_to_load(quantize, stored, folder)
    own_dtype: tuple[str, ...] = ()
    if stored != "none":  # empty quantized modules (on meta), loaded like any other module
        own_dtype = tuple(linear_parts(model))
        quantize_model(model.to(dtype), stored)  # their float tensors in the dtype quantizing in DTYPE gives
    plan = linear_parts(model) if scheme != "none" else {}
    leave_out = left_out(model, parts)
    load_strict(
        model,
        read_state_dict(folder),
        where=str(folder),
        rename=checkpoint_key_to_param,
        dtype=dtype,
        device=device,
        leave_out=leave_out,
        own_dtype=own_dtype,
        swap=lambda path, linear: quantize_linear(linear, scheme, plan[path]),
        swapped=tuple(plan),
    )
    return model.eval().requires_grad_(False)
