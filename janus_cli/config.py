"""Typed configs parsed from a checkpoint's `config.json` (`model_type: multi_modality`).

Dimension legend used across the package:
    B batch rows, T tokens, H heads, D head dim, C channels, V vocabulary,
    h w latent/code grid, N images asked for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from janus_cli.errors import CheckpointError

# Fields a sparse `language_config` leaves out take transformers' LlamaConfig defaults
# (Janus-Pro-7B's published config sets only five fields).
LLAMA_DEFAULTS: dict[str, Any] = {
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "max_position_embeddings": 2048,
    "vocab_size": 32000,
}

# The models were trained with a 4096-token context (paper / README); positions beyond it are
# untrained even though `max_position_embeddings` says 16384.
TRAINED_CONTEXT = 4096


@dataclass(frozen=True)
class LlamaConfig:
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    vocab_size: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    max_position_embeddings: int = 16384

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def context_length(self) -> int:
        return min(TRAINED_CONTEXT, self.max_position_embeddings)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LlamaConfig:
        v = {**LLAMA_DEFAULTS, **d}
        if v.get("rope_scaling"):
            raise CheckpointError("config.json: rope_scaling is not used by any Janus model")
        heads = int(v["num_attention_heads"])
        cfg = cls(
            hidden_size=int(v["hidden_size"]),
            intermediate_size=int(v["intermediate_size"]),
            num_layers=int(v["num_hidden_layers"]),
            num_heads=heads,
            num_kv_heads=int(v.get("num_key_value_heads") or heads),
            vocab_size=int(v["vocab_size"]),
            rms_norm_eps=float(v["rms_norm_eps"]),
            rope_theta=float(v["rope_theta"]),
            max_position_embeddings=int(v["max_position_embeddings"]),
        )
        if cfg.hidden_size % cfg.num_heads or cfg.num_heads % cfg.num_kv_heads:
            raise CheckpointError(
                f"config.json: hidden_size {cfg.hidden_size} / heads {cfg.num_heads} / "
                f"kv heads {cfg.num_kv_heads} do not divide evenly"
            )
        return cfg


@dataclass(frozen=True)
class SigLIPConfig:
    """SigLIP-L/16 at 384 px: the only tower the published checkpoints use."""

    image_size: int = 384
    patch_size: int = 16
    width: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_dim: int = 4096
    eps: float = 1e-6

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @classmethod
    def from_vision_config(cls, vc: dict[str, Any]) -> SigLIPConfig:
        p = vc.get("params", {})
        name = p.get("model_name", "siglip_large_patch16_384")
        if name != "siglip_large_patch16_384":
            raise CheckpointError(f"config.json: unsupported vision tower {name!r}")
        if p.get("select_feature", "same") != "same":
            raise CheckpointError(f"config.json: unsupported select_feature {p['select_feature']!r}")
        image_size = int(p.get("image_size", 384))
        if image_size != 384:
            raise CheckpointError(f"config.json: vision image_size {image_size} (only 384 is published)")
        # select_layer is resolved when the official tower is *built*: -1 keeps all 24 blocks.
        layer = int(p.get("select_layer", -1))
        depth = min(24, 24 + layer + 1) if layer <= 0 else layer
        return cls(depth=depth)


@dataclass(frozen=True)
class FlowConfig:
    """JanusFlow's ShallowUViT encoder/decoder sizes (the published values)."""

    latent_channels: int = 4
    channels: int = 768  # encoder width; the decoder runs at 2x after the skip concat
    patch: int = 2
    blocks: int = 2
    eps: float = 1e-6


@dataclass(frozen=True)
class JanusConfig:
    family: str  # "janus" (Janus-1.3B, Janus-Pro) or "janusflow"
    llm: LlamaConfig
    siglip: SigLIPConfig = field(default_factory=SigLIPConfig)
    image_token_size: int = 16384  # VQ codebook entries = gen_head outputs
    code_dim: int = 8  # gen_embed width
    flow: FlowConfig | None = None

    @property
    def image_tokens(self) -> int:
        return self.siglip.num_patches  # 576 for understanding and for the 24x24 code grid

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JanusConfig:
        if d.get("model_type") != "multi_modality":
            raise CheckpointError(
                f"config.json: model_type {d.get('model_type')!r} is not a Janus checkpoint "
                "(expected 'multi_modality'; for deepseek-community/* use `janus convert`)"
            )
        try:
            llm = LlamaConfig.from_dict(d["language_config"])
            if "vision_gen_enc_config" in d:
                return cls(
                    family="janusflow",
                    llm=llm,
                    siglip=SigLIPConfig.from_vision_config(d["vision_und_enc_config"]),
                    flow=FlowConfig(),
                )
            gv = d["gen_vision_config"]["params"]
            return cls(
                family="janus",
                llm=llm,
                siglip=SigLIPConfig.from_vision_config(d["vision_config"]),
                image_token_size=int(gv["image_token_size"]),
                code_dim=int(gv["n_embed"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"config.json: missing or malformed field {e}") from None

    @classmethod
    def from_file(cls, path: Path) -> JanusConfig:
        return cls.from_dict(read_json(path))


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
