"""JanusFlow ShallowUViT: checkpoint-name coverage, shapes, and hand-checked pieces."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import FIXTURES, assert_close, golden_tensors
from synth import synth_tensor

from janus_cli.checkpoints.strict import load_strict
from janus_cli.config import FlowConfig, JanusConfig
from janus_cli.models.uvit import (
    GRN,
    ConvNeXtBlock,
    ShallowUViTDecoder,
    ShallowUViTEncoder,
    timestep_embedding,
)

FLOW = FIXTURES / "checkpoints" / "janusflow-1.3b-tiny"
ENC, DEC = "vision_gen_enc_model.", "vision_gen_dec_model."


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((FLOW / "manifest.json").read_text())


@pytest.fixture(scope="module")
def hidden() -> int:
    return JanusConfig.from_file(FLOW / "config.json").llm.hidden_size


def _entries(manifest: dict, prefix: str) -> dict[str, tuple[int, ...]]:
    """Manifest entries under PREFIX, keyed by the name after it."""
    n = len(prefix)
    tensors = [t for t in manifest["tensors"] if t["key"].startswith(prefix)]
    return {t["key"][n:]: tuple(t["shape"]) for t in tensors}


@pytest.mark.parametrize("cls, prefix", [(ShallowUViTEncoder, ENC), (ShallowUViTDecoder, DEC)])
def test_names_and_shapes_match_checkpoint(manifest, hidden, cls, prefix):
    with torch.device("meta"):
        model = cls(FlowConfig(), hidden)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == _entries(manifest, prefix)


def test_shapes_and_dtype_on_a_small_config():
    cfg, hidden = FlowConfig(channels=16), 8
    enc, dec = ShallowUViTEncoder(cfg, hidden), ShallowUViTDecoder(cfg, hidden)
    z, t = torch.randn(3, 4, 12, 10), torch.tensor([0.0, 500.0, 966.7])
    with torch.inference_mode():
        x_emb, t_emb = enc(z, t)
        v = dec(torch.randn_like(x_emb), x_emb, t_emb)
    assert x_emb.shape == (3, 16, 6, 5) and t_emb.shape == (3, hidden)
    assert v.shape == z.shape and v.dtype == torch.float32


def test_timestep_embedding_by_hand():
    e = timestep_embedding(torch.tensor([0.0, 1.0, 1000.0]), 8)
    assert e.shape == (3, 8) and e.dtype == torch.float32
    assert torch.equal(e[0], torch.tensor([1.0] * 4 + [0.0] * 4))  # t = 0: cos 1, sin 0
    freqs = [10000 ** (-i / 4) for i in range(4)]  # 1, 0.1, 0.01, 0.001
    for row, t in ((1, 1.0), (2, 1000.0)):
        expected = [math.cos(t * f) for f in freqs] + [math.sin(t * f) for f in freqs]
        assert torch.allclose(e[row], torch.tensor(expected), atol=1e-5)


def test_grn_by_hand():
    grn = GRN(2)
    with torch.no_grad():
        grn.weight.fill_(0.5)
        grn.bias.fill_(0.1)
    # (B, h, w, F) = (1, 2, 1, 2): channel 0 holds 3 and 4 (L2 norm 5), channel 1 is zero.
    x = torch.tensor([[[[3.0, 0.0]], [[4.0, 0.0]]]])
    # n = (5, 0) / mean(5, 0) = (2, 0): out = 0.1 + x * (0.5 * n + 1) = 0.1 + 2x on channel 0.
    expected = torch.tensor([[[[6.1, 0.1]], [[8.1, 0.1]]]])
    assert torch.allclose(grn(x), expected, atol=1e-5)


def test_convnext_block_by_hand():
    block = ConvNeXtBlock(1, 1, eps=1e-6)
    with torch.no_grad():
        for p in block.parameters():
            p.zero_()
        block.depthwise.weight[0, 0, 3, 3] = 2.0  # only the centre tap sees a 1x1 input
        block.norm.weight.fill_(1.0)
        block.channelwise_linear_1.weight.copy_(torch.tensor([[1.0], [-1.0], [0.5], [2.0]]))
        block.channelwise_linear_2.weight.fill_(1.0)  # GRN weight = bias = 0: identity
        block.cond_embeds_mapper.bias.copy_(torch.tensor([0.5, -1.0]))  # scale, then shift
    x = torch.full((1, 1, 1, 1), 3.0)
    # depthwise: 6; RMSNorm over one channel: 1; linear_1: (1, -1, 0.5, 2); exact GELU; sum.
    gelu = lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2)))  # noqa: E731
    mlp = sum(gelu(v) for v in (1.0, -1.0, 0.5, 2.0))
    # residual, then SiLU(0) = 0 leaves the mapper's bias: shift + x * (1 + scale).
    expected = -1.0 + (3.0 + mlp) * 1.5
    out = block(x, torch.zeros(1, 1))
    assert out.shape == (1, 1, 1, 1)
    assert out.item() == pytest.approx(expected, abs=1e-5)


@torch.inference_mode()
def test_time_embedding_matches_official(manifest, hidden):
    """Step 0 (t = 0) of the janusflow-1.3b-tiny golden; weights synthesized from the manifest."""
    seed = manifest["seed"]
    state = {k: synth_tensor(ENC + k, shape, seed) for k, shape in _entries(manifest, ENC).items()}
    with torch.device("meta"):
        enc = ShallowUViTEncoder(FlowConfig(), hidden)
    load_strict(enc, state, where="test", dtype=torch.float32)
    golden = golden_tensors("janusflow-1.3b-tiny")
    x_emb, t_emb = enc(golden["generate.z0"], torch.zeros(2))
    assert_close(t_emb, golden["generate.step0_t_emb"])
    assert x_emb.shape == (2, 768, 24, 24) and torch.isfinite(x_emb).all()
