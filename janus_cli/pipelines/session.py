"""A loaded checkpoint: model, tokenizer and preprocessing, ready for the pipelines."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from janus_cli.checkpoints.adapter import AdapterRef, apply_adapter, read_adapter
from janus_cli.checkpoints.load import load_model
from janus_cli.checkpoints.quantized import scheme_to_load, stored_scheme
from janus_cli.config import JanusConfig, read_json
from janus_cli.errors import InputError
from janus_cli.imageio import PreprocessConfig
from janus_cli.kernels.layers import on_kernels, use_rows_layers
from janus_cli.kernels.rows import rows_kernels_available
from janus_cli.models.layout import can_pack, pack_linears, swap_linears
from janus_cli.models.quantize import Int8Linear, quantize_model
from janus_cli.runtime import check_compile, choose_quantize
from janus_cli.tokenizer import Tokenizer

COMMAND_FOR_FAMILY = {"janus": "janus generate", "janusflow": "janus flow-generate"}


@dataclass
class Session:
    name: str  # what the user passed to -m
    folder: Path
    config: JanusConfig
    model: nn.Module
    tokenizer: Tokenizer
    preprocess: PreprocessConfig
    device: torch.device
    dtype: torch.dtype
    quantize: str = "none"
    compile: bool = False  # image-token steps under torch.compile (sampling/autoregressive.py)
    adapter: AdapterRef | None = None  # the LoRA adapter merged into the weights at load

    def require(self, family: str, command: str) -> None:
        """Refuse a command the checkpoint's family cannot run, naming the right one."""
        if self.config.family != family:
            raise InputError(
                f"{self.name} is a {self.config.family} checkpoint: `{command}` needs a {family} model; "
                f"use `{COMMAND_FOR_FAMILY[self.config.family]}` instead"
            )


def open_session(
    name: str,
    folder: Path,
    device: torch.device,
    dtype: torch.dtype,
    quantize: str = "none",
    compile: bool = False,
    parts: tuple[str, ...] | None = None,
    adapter: str | Path | None = None,
) -> Session:
    """Load checkpoint FOLDER for the kinds of work PARTS (all when None; see load_model), merge
    the LoRA ADAPTER folder into it (before quantizing and re-laying out: they need the final
    weights), and prepare it to run (see prepare_model)."""
    choose_quantize(quantize)
    if compile:
        check_compile(device)
    adapter = Path(adapter).expanduser().resolve() if adapter is not None else None  # recipes: any cwd
    lora = read_adapter(adapter) if adapter is not None else None  # a bad one fails before the slow part
    config = read_json(folder / "config.json")
    cfg = JanusConfig.from_dict(config)
    stored = stored_scheme(config)
    quantize = scheme_to_load(quantize, stored, folder)  # a quantized checkpoint's own
    if lora is not None and stored != "none":
        raise InputError(
            f"{folder} is quantized as {stored}: an adapter merges into float weights; load the "
            f"original checkpoint with --adapter (and --quantize {stored}), or `janus merge` it, then "
            "`janus convert --quantize`"
        )
    tok = Tokenizer(folder, flow=cfg.family == "janusflow")
    pre = folder / "preprocessor_config.json"
    preprocess = PreprocessConfig.from_dict(read_json(pre)) if pre.exists() else PreprocessConfig()
    if lora is None:
        # quantized while loading, one linear at a time: prepare_model has nothing left to quantize
        model = prepare_model(
            load_model(folder, dtype, device, parts, quantize), device, dtype, "none", compile
        )
    else:
        # the adapter merges into the float weights, so these are quantized after it, whole
        model = apply_adapter(load_model(folder, dtype, device, parts), lora)
        model = prepare_model(model, device, dtype, quantize, compile)
    ref = lora.ref(adapter) if lora is not None else None
    return Session(name, folder, cfg, model, tok, preprocess, device, dtype, quantize, compile, ref)


def prepare_model(
    model: nn.Module, device: torch.device, dtype: torch.dtype, quantize: str = "none", compile: bool = False
) -> nn.Module:
    """In place, after loading: QUANTIZE int8 or int4 swaps the LLM and image-head linears
    (models/quantize.py); then on the
    CPU, unless COMPILE (the compiler picks its own matmul kernels and cannot trace these), the
    LLM's blocks and the linears a token step runs move to our kernels where they run (bf16,
    AVX512-BF16, a C++ compiler: kernels/layers.py, rows.py, int8.py, int4.py), and the rest of the
    linears are re-laid out for oneDNN (models/layout.py). Returns MODEL."""
    if quantize != "none":
        quantize_model(model, quantize)
    if compile:
        return model
    if rows_kernels_available(device, dtype):
        if "language_model" in model.TOKEN_STEP and model.language_model is not None:
            use_rows_layers(model.language_model)
        for part in filter(None, (getattr(model, name) for name in model.TOKEN_STEP)):  # None: not loaded
            swap_linears(part, on_kernels, kinds=(nn.Linear, Int8Linear))
    if can_pack(device, dtype):
        pack_linears(model)
    return model
