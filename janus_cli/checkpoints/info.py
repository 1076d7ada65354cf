"""What `janus models info` reports: a checkpoint's architecture, from its config alone.

Works without weights: a known alias that is not downloaded is described from the packaged
copy of its published `config.json` (`checkpoints/configs/<alias>.json`).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from janus_cli.checkpoints.hub import ModelSpec, cached_path, spec_for
from janus_cli.checkpoints.quantized import stored_scheme
from janus_cli.config import JanusConfig, read_json
from janus_cli.errors import InputError


def bundled_config(alias: str) -> dict[str, Any] | None:
    """The packaged published config.json of a registry alias, if shipped."""
    f = resources.files("janus_cli.checkpoints").joinpath("configs", f"{alias}.json")
    return json.loads(f.read_text(encoding="utf-8")) if f.is_file() else None


def locate(ref: str) -> tuple[ModelSpec | None, Path | None, dict[str, Any]]:
    """(registry entry, local folder or None, config dict) for a folder, alias or repo id.

    No network: an alias that is not cached falls back to its bundled config.
    Raises:
        InputError: REF is neither a folder, a known model nor a cached repo.
    """
    path = Path(ref).expanduser()
    if path.is_dir():
        return spec_for(ref), path, read_json(path / "config.json")
    spec = spec_for(ref)
    folder = cached_path(spec.repo if spec else ref) if (spec or ref.count("/") == 1) else None
    if folder is not None and (folder / "config.json").is_file():
        return spec, folder, read_json(folder / "config.json")
    config = bundled_config(spec.name) if spec else None
    if config is None:
        raise InputError(f"{ref}: no such folder, known model or cached hub repo (see `janus models list`)")
    return spec, None, config


def describe(ref: str) -> dict[str, Any]:
    """A flat, JSON-ready summary of checkpoint REF (see `locate`)."""
    spec, folder, config = locate(ref)
    info: dict[str, Any] = {
        "name": spec.name if spec else ref,
        "repo": spec.repo if spec else None,
        "folder": str(folder) if folder else None,
        "config": "checkpoint" if folder else "bundled (not downloaded)",
        "dtype": config.get("torch_dtype"),
        # the scheme a `janus convert --quantize` checkpoint stores, and loads run
        "quantization": stored_scheme(config),
    }
    if config.get("_class_name") == "AutoencoderKL":
        keys = ("latent_channels", "block_out_channels", "scaling_factor")
        return {
            **info,
            "family": "vae",
            **{k: config.get(k) for k in keys},
            "checkpoint_parameters": spec.parameters if spec else None,
        }
    cfg = JanusConfig.from_dict(config)
    llm = cfg.llm
    info.update(
        family=cfg.family,
        layers=llm.num_layers,
        hidden_size=llm.hidden_size,
        intermediate_size=llm.intermediate_size,
        heads=llm.num_heads,
        kv_heads=llm.num_kv_heads,
        head_dim=llm.head_dim,
        vocab_size=llm.vocab_size,
        max_position_embeddings=llm.max_position_embeddings,
        context_length=llm.context_length,
        image_tokens=cfg.image_tokens,
        parameters=count_parameters(cfg),
        checkpoint_parameters=spec.parameters if spec else None,
        special_tokens=_special_tokens(folder, cfg)
        if folder and (folder / "tokenizer.json").is_file()
        else None,
    )
    return info


def count_parameters(cfg: JanusConfig) -> int:
    """Elements of the runtime model (built on the meta device: no memory used)."""
    from janus_cli.checkpoints.load import build_model

    return sum(t.numel() for t in build_model(cfg).state_dict().values())


def _special_tokens(folder: Path, cfg: JanusConfig) -> dict[str, int | None]:
    from dataclasses import asdict

    from janus_cli.tokenizer import Tokenizer

    return asdict(Tokenizer(folder, flow=cfg.family == "janusflow").special)
