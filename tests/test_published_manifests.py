"""The runtime's module tree accounts for every tensor of the five real checkpoints.

Built from each published `config.json` on the meta device (no memory), the model's
parameters must all appear in the published manifest with the same shape, and every manifest
tensor the model lacks must be one `checkpoint_key_to_param` knowingly drops.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from janus_cli.checkpoints.load import build_model, checkpoint_key_to_param
from janus_cli.config import JanusConfig

PUBLISHED = Path(__file__).parents[1] / "weights" / "published"

# model: (tensors, elements) of the real checkpoint (spec §3, hub file sizes / 2 bytes)
TOTALS = {
    "Janus-1.3B": (882, 2_089_297_547),
    "Janus-Pro-1B": (882, 2_089_297_547),
    "Janus-Pro-7B": (936, 7_420_434_059),
    "JanusFlow-1.3B": (587, 2_046_367_504),
}


def _manifest(name: str) -> dict[str, tuple[int, ...]]:
    tensors = json.loads((PUBLISHED / name / "manifest.json").read_text())["tensors"]
    return {t["key"]: tuple(t["shape"]) for t in tensors}


@pytest.mark.parametrize("name", list(TOTALS))
def test_manifest_totals(name):
    manifest = _manifest(name)
    count, elements = TOTALS[name]
    assert len(manifest) == count
    assert sum(math.prod(s) for s in manifest.values()) == elements


@pytest.mark.parametrize("name", list(TOTALS))
def test_model_accounts_for_every_published_tensor(name):
    manifest = _manifest(name)
    model = build_model(JanusConfig.from_file(PUBLISHED / name / "config.json"))
    params = {k: tuple(v.shape) for k, v in model.state_dict().items()}

    not_in_manifest = [k for k in params if k not in manifest]
    assert not not_in_manifest, f"model tensors the checkpoint lacks: {not_in_manifest[:5]}"
    wrong = [f"{k} {params[k]} != {manifest[k]}" for k in params if params[k] != manifest[k]]
    assert not wrong, f"shape mismatches: {wrong[:5]}"

    skipped = [k for k in manifest if k not in params]
    kept = [k for k in skipped if checkpoint_key_to_param(k) is not None]
    assert not kept, f"manifest tensors neither loaded nor dropped: {kept[:5]}"
    assert all(checkpoint_key_to_param(k) == k for k in params)

    count, elements = TOTALS[name]
    assert len(params) + len(skipped) == count
    model_elements = sum(math.prod(s) for s in params.values())
    assert model_elements + sum(math.prod(manifest[k]) for k in skipped) == elements


def test_sdxl_vae_decoder_accounts_for_the_published_tensors():
    """The fifth published model: every decoder parameter is a published tensor of that shape;
    the rest of the file (the encoder half) is what loading drops."""
    from janus_cli.checkpoints.vae import vae_config, vae_key_to_param
    from janus_cli.models.vae import VAEDecoder

    doc = json.loads((PUBLISHED / "sdxl-vae" / "manifest.json").read_text())
    manifest = {t["key"]: tuple(t["shape"]) for t in doc["tensors"]}
    assert len(manifest) == doc["num_tensors"] == 248
    assert sum(math.prod(s) for s in manifest.values()) == doc["num_elements"] == 83_653_863
    cfg = vae_config(json.loads((PUBLISHED / "sdxl-vae" / "config.json").read_text()))
    with torch.device("meta"):
        params = {k: tuple(v.shape) for k, v in VAEDecoder(cfg).state_dict().items()}
    assert {k: manifest.get(k) for k in params} == params
    skipped = [k for k in manifest if k not in params]
    assert skipped and all(vae_key_to_param(k) is None for k in skipped)
