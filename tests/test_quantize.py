"""`--quantize int8`: the Int8Linear kernel path, its error bound, its bytes, its quality, the CLI."""

import copy

import pytest
import torch
from conftest import assert_one_line_error, checkpoint_dir, image_path
from conftest import run_janus as run
from torch import nn

from janus_cli.checkpoints.load import load_model
from janus_cli.models.quantize import PACKED_MAX_ROWS, Int8Linear, quantize_int8, quantize_model
from janus_cli.sampling.fidelity import teacher_forced


def tensor_bytes(module: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
# both sides of the kernel switch
@pytest.mark.parametrize("rows", [1, 3, PACKED_MAX_ROWS, PACKED_MAX_ROWS + 1, 64])
def test_int8_linear_matches_dequantized_matmul(dtype, rows):
    gen = torch.Generator().manual_seed(rows)
    linear = nn.Linear(320, 96).to(dtype)
    with torch.no_grad():
        linear.weight.normal_(0, 0.05, generator=gen)
        linear.bias.normal_(0, 0.05, generator=gen)
    q = Int8Linear.from_linear(linear)
    x = torch.randn(1, rows, 320, generator=gen).to(dtype)
    ref = x.float() @ (q.weight.float() * q.scale.float()[:, None]).T + q.bias.float()  # (1, rows, 96)
    y = q(x)
    assert y.shape == (1, rows, 96) and y.dtype == dtype
    # fp32: only summation order differs; bf16: the output's rounding (8 bits) dominates.
    tol = 1e-5 if dtype == torch.float32 else 8e-3
    assert (y.float() - ref).abs().max().item() <= tol * ref.abs().max().item()


def test_int8_linear_falls_back_when_k_is_not_a_multiple_of_16():
    linear = nn.Linear(100, 32, bias=False).to(torch.bfloat16)  # the CPU kernel garbles K = 100
    q = Int8Linear.from_linear(linear)
    assert not q.packed
    x = torch.randn(2, 100, dtype=torch.bfloat16)
    ref = x.float() @ q.dequantize().float().T
    assert (q(x).float() - ref).abs().max().item() <= 8e-3 * ref.abs().max().item()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_quantization_error_is_at_most_half_a_step_per_channel(dtype):
    gen = torch.Generator().manual_seed(0)
    # channels of very different size
    w = torch.randn(64, 256, generator=gen) * torch.logspace(-3, 1, 64)[:, None]
    w[5] = 0  # an all-zero channel stays zero, with a finite scale
    linear = nn.Linear(256, 64, bias=False).to(dtype)
    with torch.no_grad():
        linear.weight.copy_(w)
    q = Int8Linear.from_linear(linear)
    assert q.weight.dtype == torch.int8 and q.scale.dtype == dtype and q.weight.abs().max() <= 127
    error = (linear.weight.float() - q.weight.float() * q.scale.float()[:, None]).abs().amax(dim=1)  # (64,)
    assert torch.all(error <= q.scale.float() * (0.5 + 1e-3))
    assert q.scale.isfinite().all() and q.weight[5].abs().max() == 0


def test_quantized_llm_blocks_take_half_the_bytes_of_bf16():
    model = load_model(checkpoint_dir("janus-pro-1b-tiny"), torch.bfloat16)
    before = tensor_bytes(model.language_model.model.layers), tensor_bytes(model.gen_head)
    quantize_int8(model)
    after = tensor_bytes(model.language_model.model.layers), tensor_bytes(model.gen_head)
    # int8 weights, plus per row one bf16 scale (in gen_head also a bias; in the blocks the
    # norms): 0.5 + 2 / hidden for a bias-free matrix, 3 % at this checkpoint's hidden of 64.
    for b, a in zip(before, after, strict=True):
        assert 0.5 <= a / b < 0.53
    layer = model.language_model.model.layers[0]
    linears = [
        layer.self_attn.q_proj,
        layer.self_attn.k_proj,
        layer.self_attn.v_proj,
        layer.self_attn.o_proj,
        layer.mlp.gate_proj,
        layer.mlp.up_proj,
        layer.mlp.down_proj,
        model.gen_head.vision_head,
    ]
    assert all(isinstance(m, Int8Linear) for m in linears)
    assert isinstance(model.language_model.lm_head, nn.Linear)  # text logits stay in the model dtype


# Measured on this checkpoint (64 steps, 2 images, seed 0), guided KL mean / conditional KL
# mean / guided top-1: int8 0.0010 / 0.00003 / 98 % (fp32), 0.0023 / 0.00007 / 95 % (bf16);
# int4 0.22 / 0.0085 / 48-52 % (its hidden size of 64 makes one group per row). The bounds leave
# room for kernel differences across CPUs.
BOUNDS = {"int8": (0.01, 0.0005), "int4": (0.5, 0.03)}


@pytest.mark.parametrize("scheme", sorted(BOUNDS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_quantized_decoding_stays_close_to_the_unquantized_distribution(dtype, scheme):
    """Teacher forced on the reference's sampled codes (sampling/fidelity.py)."""
    model = load_model(checkpoint_dir("janus-pro-1b-tiny"), dtype)
    quantized = quantize_model(copy.deepcopy(model), scheme)
    prompt = torch.randint(10, 1200, (30,), generator=torch.Generator().manual_seed(0)).tolist()
    uncond = [prompt[0]] + [0] * (len(prompt) - 1)
    out = teacher_forced(model, quantized, prompt, uncond, n=2, cfg=5.0, steps=64)
    guided, conditional = BOUNDS[scheme]
    assert 0 < out["guided"]["kl_mean"] <= guided
    assert 0 < out["conditional"]["kl_mean"] <= conditional
    # CFG 5 multiplies the logit error by about 6, the KL by its square
    assert out["guided"]["kl_mean"] > 5 * out["conditional"]["kl_mean"]


def test_generate_with_int8_end_to_end(tmp_path):
    folder = checkpoint_dir("janus-pro-1b-tiny")
    r = run(
        "generate",
        "a red fox",
        "-m",
        str(folder),
        "--seed",
        "0",
        "-o",
        str(tmp_path),
        "--quantize",
        "int8",
        "--dtype",
        "bfloat16",
    )
    assert r.returncode == 0, r.stderr
    paths = r.stdout.splitlines()
    assert len(paths) == 1 and paths[0].endswith(".png")


def test_bad_quantize_value_is_one_line_error(tmp_path):
    r = run(
        "generate",
        "a red fox",
        "-m",
        str(checkpoint_dir("janus-pro-1b-tiny")),
        "-o",
        str(tmp_path),
        "--quantize",
        "int3",
    )
    assert_one_line_error(r, "--quantize int3: choose none, int8 or int4")
    r = run(
        "describe",
        str(image_path("square0.png")),
        "-m",
        str(checkpoint_dir("janus-pro-1b-tiny")),
        env={"JANUS_QUANTIZE": "int3"},
    )
    assert_one_line_error(r, "--quantize int3")
