"""Read `deepseek-community/*` checkpoints (transformers' `JanusForConditionalGeneration`,
`model_type: "janus"`) back into the published layout, for `janus convert`.

The port renamed the keys (spec §3.3; transformers' `convert_janus_weights_to_hf.py`), split the
SigLIP `qkv` projections into equal thirds, squeezed `pos_embed` to (576, 1024) and dropped the
unused `attn_pool.*` and `codebook_used` tensors. `HF_TO_PUBLISHED` undoes all of it in one table;
a key no row matches is a CheckpointError, never a guess. The dropped tensors stay dropped: the
runtime does not need them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from janus_cli.checkpoints.read import iter_tensors
from janus_cli.errors import CheckpointError

_V = "vision_model.vision_tower."
_L = r"model\.vision_model\.encoder\.layers\.(?P<n>\d+)\."
_VQ = r"model\.vqmodel\."
_P = r"(?P<p>weight|bias)"

# (transformers key, published key, op): first full match wins. op "qkv" fuses the q/k/v thirds
# (in that order along dim 0); "unsqueeze" restores pos_embed's leading batch dim.
HF_TO_PUBLISHED: tuple[tuple[str, str, str | None], ...] = (
    (r"model\.vision_model\.embeddings\.position_embedding\.weight", _V + "pos_embed", "unsqueeze"),
    (r"model\.vision_model\.embeddings\.patch_embedding\." + _P, _V + r"patch_embed.proj.\g<p>", None),
    (r"model\.vision_model\.post_layernorm\." + _P, _V + r"norm.\g<p>", None),
    (_L + r"self_attn\.(?P<part>[qkv])_proj\." + _P, _V + r"blocks.\g<n>.attn.qkv.\g<p>", "qkv"),
    (_L + r"self_attn\.projection_layer\." + _P, _V + r"blocks.\g<n>.attn.proj.\g<p>", None),
    (_L + r"layer_norm(?P<i>[12])\." + _P, _V + r"blocks.\g<n>.norm\g<i>.\g<p>", None),
    (_L + r"mlp\.(?P<fc>fc[12])\." + _P, _V + r"blocks.\g<n>.mlp.\g<fc>.\g<p>", None),
    (r"model\.aligner\.fc1\." + _P, r"aligner.layers.0.\g<p>", None),
    (r"model\.aligner\.hidden_layers\.0\." + _P, r"aligner.layers.2.\g<p>", None),
    (r"model\.generation_aligner\.fc1\." + _P, r"gen_aligner.layers.0.\g<p>", None),
    (r"model\.generation_aligner\.hidden_layers\.0\." + _P, r"gen_aligner.layers.2.\g<p>", None),
    (r"model\.generation_head\.proj_out\." + _P, r"gen_head.output_mlp_projector.\g<p>", None),
    (r"model\.generation_head\.vision_head\." + _P, r"gen_head.vision_head.\g<p>", None),
    (r"model\.generation_embeddings\.weight", "gen_embed.weight", None),
    (r"model\.language_model\.(?P<rest>.+)", r"language_model.model.\g<rest>", None),
    (r"lm_head\.weight", "language_model.lm_head.weight", None),
    # VQ-16: encoder.down / decoder.up were conv_blocks, `block` was `res`,
    # mid.{block_1,attn_1,block_2} were mid.{0,1,2}
    (
        _VQ + r"(?P<c>encoder\.down|decoder\.up)\.(?P<j>\d+)\.block\.(?P<rest>.+)",
        r"gen_vision_model.\g<c>.\g<j>.res.\g<rest>",
        "vq",
    ),
    (
        _VQ + r"(?P<c>encoder\.down|decoder\.up)\.(?P<j>\d+)\.(?P<rest>(attn|downsample|upsample)\..+)",
        r"gen_vision_model.\g<c>.\g<j>.\g<rest>",
        "vq",
    ),
    (
        _VQ + r"(?P<c>encoder|decoder)\.mid\.block_1\.(?P<rest>.+)",
        r"gen_vision_model.\g<c>.mid.0.\g<rest>",
        None,
    ),
    (
        _VQ + r"(?P<c>encoder|decoder)\.mid\.attn_1\.(?P<rest>.+)",
        r"gen_vision_model.\g<c>.mid.1.\g<rest>",
        None,
    ),
    (
        _VQ + r"(?P<c>encoder|decoder)\.mid\.block_2\.(?P<rest>.+)",
        r"gen_vision_model.\g<c>.mid.2.\g<rest>",
        None,
    ),
    (
        _VQ + r"(?P<rest>(encoder|decoder)\.(conv_in|norm_out|conv_out)\." + _P + r")",
        r"gen_vision_model.\g<rest>",
        None,
    ),
    (
        _VQ + r"(?P<rest>(quant_conv|post_quant_conv)\." + _P + r"|quantize\.embedding\.weight)",
        r"gen_vision_model.\g<rest>",
        None,
    ),
)
_RULES = [(re.compile(hf), pub, op) for hf, pub, op in HF_TO_PUBLISHED]
_VQ_BLOCKS = {"encoder.down": "encoder.conv_blocks", "decoder.up": "decoder.conv_blocks"}


def is_transformers_config(config: dict[str, Any]) -> bool:
    return config.get("model_type") == "janus"


def map_key(key: str) -> tuple[str, str | None, str | None]:
    """(published key, op, q/k/v part) for transformers key KEY. Raises CheckpointError if unknown."""
    for rx, pub, op in _RULES:
        m = rx.fullmatch(key)
        if m:
            name = m.expand(pub)
            if op == "vq":
                name = name.replace(m["c"], _VQ_BLOCKS[m["c"]], 1)
                op = None
            return name, op, m.groupdict().get("part")
    raise CheckpointError(f"unknown tensor {key!r} in a transformers (model_type 'janus') checkpoint")


def published_tensors(folder: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (published key, tensor) for the transformers checkpoint FOLDER, file by file."""
    pending: dict[str, dict[str, torch.Tensor]] = {}  # fused key -> parts seen so far
    for key, tensor in iter_tensors(folder):
        try:
            name, op, part = map_key(key)
        except CheckpointError as e:
            raise CheckpointError(f"{folder}: {e}") from None
        if op == "unsqueeze":
            yield name, tensor.unsqueeze(0)  # (576, 1024) -> (1, 576, 1024)
        elif op == "qkv":
            parts = pending.setdefault(name, {})
            parts[part] = tensor
            if len(parts) == 3:
                del pending[name]
                yield name, torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)  # (3C, C) or (3C,)
        else:
            yield name, tensor
    if pending:
        raise CheckpointError(
            f"{folder}: incomplete q/k/v projections for {', '.join(sorted(pending))[:200]}"
        )


def to_multi_modality(config: dict[str, Any]) -> dict[str, Any]:
    """The published `multi_modality` config.json for a transformers `janus` config (best effort).

    Raises:
        CheckpointError: the config describes something no published checkpoint is.
    """
    text = dict(config.get("text_config") or {})
    vision = dict(config.get("vision_config") or {})
    vq = dict(config.get("vq_config") or {})
    expect = {"hidden_size": 1024, "num_hidden_layers": 24, "patch_size": 16, "image_size": 384}
    for k, v in expect.items():
        if vision.get(k, v) != v:
            raise CheckpointError(
                f"config.json: vision_config.{k} = {vision[k]} (only SigLIP-L/16-384 is published)"
            )
    keep = (
        "hidden_size",
        "intermediate_size",
        "max_position_embeddings",
        "num_attention_heads",
        "num_hidden_layers",
        "num_key_value_heads",
        "vocab_size",
        "rms_norm_eps",
        "rope_theta",
        "rope_scaling",
        "torch_dtype",
    )
    language = {"model_type": "llama", **{k: text[k] for k in keep if k in text}}
    hidden = int(text.get("hidden_size", 4096))  # LlamaConfig's default, as transformers omits defaults
    code_dim, codes = int(vq.get("embed_dim", 8)), int(vq.get("num_embeddings", 16384))
    proj = int(vision.get("projection_dim", hidden))
    gen_proj = int(vq.get("projection_dim", hidden))

    def sub(cls: str, model_type: str, **params: Any) -> dict[str, Any]:
        return {"cls": cls, "model_type": model_type, "params": params}

    return {
        "aligner_config": sub(
            "MlpProjector",
            "aligner",
            depth=int(vision.get("depth", 2)),
            input_dim=1024,
            n_embed=proj,
            projector_type="mlp_gelu",
        ),
        "gen_aligner_config": sub(
            "MlpProjector",
            "gen_aligner",
            depth=int(vq.get("depth", 2)),
            input_dim=code_dim,
            n_embed=gen_proj,
            projector_type="mlp_gelu",
        ),
        "gen_head_config": sub(
            "vision_head",
            "gen_head",
            image_token_embed=int(vq.get("image_token_embed_dim", hidden)),
            image_token_size=codes,
            n_embed=hidden,
        ),
        "gen_vision_config": sub("VQ-16", "gen_vision", image_token_size=codes, n_embed=code_dim),
        "language_config": language,
        "model_type": "multi_modality",
        "torch_dtype": config.get("torch_dtype", text.get("torch_dtype", "bfloat16")),
        "vision_config": sub(
            "CLIPVisionTower",
            "vision",
            image_size=384,
            model_name="siglip_large_patch16_384",
            select_feature="same",
            select_layer=int(vision.get("select_layer", -1)),
        ),
    }


def to_vlm_preprocessor(pre: dict[str, Any]) -> dict[str, Any]:
    """JanusImageProcessor's `size: {height, width}` as VLMImageProcessor's `image_size`."""
    out = dict(pre)
    size = out.get("size")
    if "image_size" not in out and isinstance(size, dict) and "height" in size:
        out["image_size"] = int(size["height"])
    return out
