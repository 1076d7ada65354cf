"""int4 weights (models/int4.py) and their W4A8 kernel (kernels/int4.h) against fp64 references.

Two errors are tested apart: the weight format's (dequantizing is exact, rounding is within half
a step) and the kernel's activation rounding (int8 per row and group): the kernel equals the
fp64 product of the rounded activations and the dequantized weight to the output's bf16
rounding, and the true activations' product to a bound derived from the rounding."""

import pytest
import torch
import torch.nn.functional as F
from rounding import BF16_HALF_ULP, rounded_activations
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from janus_cli.kernels import build
from janus_cli.kernels.int4 import KERNEL_ROWS, int4_rows
from janus_cli.models.int4 import GROUPS, Int4Linear, pack, unpack

needs_kernel = pytest.mark.skipif(build.load_rows()[0] is None, reason=f"kernels: {build.load_rows()[1]}")
SHAPES = [(64, 64), (176, 96), (96, 176), (40, 100), (352, 2048)]  # (N, K): K off the group, N off 32


def linear_of(n: int, k: int, seed: int, bias: bool = False) -> nn.Linear:
    gen = torch.Generator().manual_seed(seed)
    linear = nn.Linear(k, n, bias=bias)
    with torch.no_grad():
        linear.weight.normal_(0, 0.05, generator=gen)
        linear.weight[:, 3] *= 30  # a heavy input channel
        if bias:
            linear.bias.normal_(0, 0.05, generator=gen)
    return linear.to(torch.bfloat16)


def zero_point_bound(q4: Int4Linear, x: Tensor) -> Tensor:
    """(M, N): how far PyTorch's int4 kernel may land from ours: it stores each group's zero
    point offset + 8 scale in bf16 (half an ulp, 2^-9 relative), which moves the output by that
    times the group's sum of |x|."""
    _, scale, offset = q4.codes()
    zero = (offset.double() + 8 * scale.double()).abs() * 2**-9  # (N, G)
    flat = x.reshape(-1, x.shape[-1]).double().abs()
    groups = F.pad(flat, (0, zero.shape[1] * q4.group - flat.shape[1])).view(flat.shape[0], -1, q4.group)
    return groups.sum(-1) @ zero.T  # (M, N)


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("n,k", SHAPES)
def test_codes_pack_round_trip_and_round_within_half_a_step(group, n, k):
    linear = linear_of(n, k, seed=n + k)
    q4 = Int4Linear.from_linear(linear, group)
    q, scale, offset = q4.codes()
    assert q4.group == group and q.max() <= 15 and scale.dtype == offset.dtype == torch.bfloat16
    qweight, scales = pack(q, scale, offset)
    assert torch.equal(qweight, q4.qweight) and torch.equal(scales, q4.scales)
    assert all(torch.equal(a, b) for a, b in zip(unpack(qweight, scales, n), (q, scale, offset), strict=True))
    # dequantizing is exact in fp32: scale * q + offset against fp64
    ref = q.double().view(n, -1, group) * scale.double()[..., None] + offset.double()[..., None]
    assert torch.equal(q4.dequantize(torch.float32).double(), ref.view(n, -1)[:, :k])
    # round to nearest: half a step, plus the bf16 rounding of a group's offset and scale
    s = scale.float().repeat_interleave(group, dim=1)[:, :k]
    m = offset.float().abs().repeat_interleave(group, dim=1)[:, :k]
    error = (linear.weight.float() - q4.dequantize(torch.float32)).abs()
    assert torch.all(error <= 0.55 * s + m * 2**-8)


def test_a_constant_group_keeps_finite_scales_and_is_exact():
    linear = nn.Linear(64, 32, bias=False)
    with torch.no_grad():
        linear.weight.fill_(0.25)
        linear.weight[5] = 0
    q4 = Int4Linear.from_linear(linear.to(torch.bfloat16), 32)
    assert q4.scales.isfinite().all()
    assert torch.equal(q4.dequantize(torch.float32), linear.weight.float())


def test_the_buffers_are_the_checkpoint(tmp_path):
    q4 = Int4Linear.from_linear(linear_of(96, 176, seed=1, bias=True), 64)
    save_file(q4.state_dict(), tmp_path / "w.safetensors")
    state = load_file(tmp_path / "w.safetensors")
    assert set(state) == {"qweight", "scales", "bias"}
    again = Int4Linear(state["qweight"], state["scales"], state["bias"], in_features=176, out_features=96)
    x = torch.randn(3, 176, dtype=torch.bfloat16)
    assert again.group == 64 and torch.equal(again(x), q4(x))


def test_fused_linears_compute_their_parts_side_by_side():
    parts = [Int4Linear.from_linear(linear_of(n, 96, seed=n), 32) for n in (64, 176, 40)]
    fused = Int4Linear.cat(*parts)
    assert fused.out_features == 280
    x = torch.randn(2, 96, dtype=torch.bfloat16)
    assert torch.equal(fused.dequantize(), torch.cat([p.dequantize() for p in parts]))
    assert torch.equal(fused(x), torch.cat([p(x) for p in parts], dim=-1))


@needs_kernel
@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("n,k", SHAPES)
def test_the_kernel_is_the_product_of_rounded_activations_and_dequantized_weights(group, n, k):
    linear = linear_of(n, k, seed=group + n, bias=True)
    q4 = Int4Linear.from_linear(linear, group)
    w = q4.dequantize(torch.float32).double()  # (N, K), exact
    gen = torch.Generator().manual_seed(k)
    for rows in range(1, KERNEL_ROWS + 1):
        x = torch.randn(rows, k, generator=gen).to(torch.bfloat16)
        x[:, 3] *= 50  # a heavy activation channel
        y = q4(x).double()
        x8, d = rounded_activations(x, group)
        exact_x8 = x8 @ w.T + linear.bias.double()
        terms = x8.abs() @ w.abs().T  # bounds fp32 summation error
        assert torch.all((y - exact_x8).abs() <= BF16_HALF_ULP * exact_x8.abs() + 1e-5 * terms), rows
        # against the true activations: |x - x8| <= d / 2 per element, so the product moves by
        # at most sum over groups of d / 2 * sum |w| (W4A8's error, apart from the weights')
        exact = x.double() @ w.T + linear.bias.double()
        kp = d.shape[1] * group
        wsum = F.pad(w.abs(), (0, kp - k)).view(n, -1, group).sum(-1)  # (N, G)
        bound = d / 2 @ wsum.T  # (M, N)
        assert torch.all((y - exact).abs() <= bound * 1.001 + BF16_HALF_ULP * exact.abs() + 1e-5 * terms)


@pytest.mark.parametrize("n,rows,pytorchs", [(96, 1, True), (96, KERNEL_ROWS + 1, False), (40, 2, False)])
def test_without_our_kernel_pytorchs_runs_or_the_weight_is_dequantized(
    without_rows_kernels, n, rows, pytorchs
):
    q4 = Int4Linear.from_linear(linear_of(n, 176, seed=2, bias=True), 64)
    x = torch.randn(1, rows, 176, generator=torch.Generator().manual_seed(rows)).to(torch.bfloat16)
    assert int4_rows(x, q4.qweight, q4.scales, q4.bias, n, 176) is None
    ref = x.double() @ q4.dequantize(torch.float32).double().T + q4.bias.double()
    y = q4(x)
    assert (q4.torch_packed is not None) == pytorchs  # PyTorch's layout only where it ran
    assert y.shape == (1, rows, n) and y.dtype == torch.bfloat16
    # bf16 output rounding, and for PyTorch's kernel its bf16 zero point (offset + 8 scale)
    bound = 2**-7 * ref.abs() + 1e-3 * ref.abs().max() + zero_point_bound(q4, x).view(ref.shape) * pytorchs
    assert torch.all((y.double() - ref).abs() <= bound)
    if n != 96:
        return
    y32 = q4(x.float())  # fp32 models: W4A16 in fp32
    assert y32.dtype == torch.float32
    assert (y32.double() - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_many_rows_take_the_dequantized_matmul():
    q4 = Int4Linear.from_linear(linear_of(64, 64, seed=3), 32)
    x = torch.randn(KERNEL_ROWS + 1, 64, dtype=torch.bfloat16)
    assert int4_rows(x, q4.qweight, q4.scales, None, 64, 64) is None
    assert torch.equal(q4(x), F.linear(x, q4.dequantize()))


def test_the_benchmark_scripts_import_and_pytorchs_kernel_module_matches():
    import importlib.util
    from pathlib import Path

    modules = {}
    for name in ("int4_kernels", "int4_error"):
        path = Path(__file__).parents[1] / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
        modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(modules[name])
        assert callable(modules[name].main)
    q4 = Int4Linear.from_linear(linear_of(64, 128, seed=4), 64)
    x = torch.randn(2, 128, generator=torch.Generator().manual_seed(4)).to(torch.bfloat16)
    ref = x.double() @ q4.dequantize(torch.float32).double().T
    theirs = modules["int4_kernels"].TorchInt4(q4)(x).double()
    assert torch.all(
        (theirs - ref).abs() <= 2**-7 * ref.abs() + 1e-3 * ref.abs().max() + zero_point_bound(q4, x)
    )
    # the error study's asymmetric rounding is the format's
    linear = linear_of(64, 128, seed=5)
    study = modules["int4_error"].dequantized(linear.weight.detach(), 64, symmetric=False)
    assert torch.equal(study, Int4Linear.from_linear(linear, 64).dequantize(torch.float32))
