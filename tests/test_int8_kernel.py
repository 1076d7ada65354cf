"""int8 weights on the W8A8 kernel (kernels/int8.py, kernels/int8.h) against fp64 references.

As for int4 (tests/test_int4.py), two errors are tested apart: the weight format's belongs to
models/quantize.Int8Linear (tests/test_quantize.py); the kernel equals the fp64 product of its
rounded activations (int8 per row and group) and the int8 weight to the output's bf16 rounding,
and the true activations' product to a bound derived from the rounding."""

import pytest
import torch
import torch.nn.functional as F
from rounding import BF16_HALF_ULP, rounded_activations
from torch import nn

from janus_cli.kernels import build
from janus_cli.kernels.int8 import GROUP, KERNEL_ROWS, Int8RowsLinear, pack_quads, unpack_quads
from janus_cli.models.quantize import Int8Linear

needs_kernel = pytest.mark.skipif(build.load_rows()[0] is None, reason=f"kernels: {build.load_rows()[1]}")
SHAPES = [(64, 64), (176, 96), (96, 176), (40, 100), (80, 6), (352, 2048)]  # (N, K): off 32 and the group


def int8_of(n: int, k: int, seed: int, bias: bool = False) -> Int8Linear:
    gen = torch.Generator().manual_seed(seed)
    linear = nn.Linear(k, n, bias=bias)
    with torch.no_grad():
        linear.weight.normal_(0, 0.05, generator=gen)
        linear.weight[:, min(3, k - 1)] *= 30  # a heavy input channel
        if bias:
            linear.bias.normal_(0, 0.05, generator=gen)
    return Int8Linear.from_linear(linear.to(torch.bfloat16))


@pytest.mark.parametrize("n,k", SHAPES)
def test_quads_round_trip_and_hold_codes_plus_128(n, k):
    q = torch.randint(-127, 128, (n, k), dtype=torch.int8, generator=torch.Generator().manual_seed(n))
    quads = pack_quads(q)
    assert quads.dtype == torch.uint8 and quads.shape == (-(-n // 32), -(-k // GROUP) * GROUP // 4, 128)
    assert torch.equal(unpack_quads(quads, n, k), q)
    # step 0 of block 0: output 0's k 0..3, then output 1's; padding is code 0 (byte 128)
    assert quads[0, 0, :8].tolist() == [v + 128 for v in (*q[0, :4].tolist(), *q[1, :4].tolist())]
    if k % GROUP:
        assert quads[0, k // 4, k % 4] == 128


def test_fused_linears_compute_their_parts_side_by_side():
    parts = [int8_of(n, 96, seed=n, bias=True) for n in (64, 176, 40)]
    fused = Int8RowsLinear.from_linears(*parts)
    x = torch.randn(2, 96, dtype=torch.bfloat16)
    assert fused.out_features == 280
    assert torch.equal(fused(x), torch.cat([Int8RowsLinear.from_linears(p)(x) for p in parts], dim=-1))


@needs_kernel
@pytest.mark.parametrize("n,k", SHAPES)
@pytest.mark.parametrize("bias", [False, True])
def test_the_kernel_is_the_product_of_rounded_activations_and_int8_weights(n, k, bias):
    q8 = int8_of(n, k, seed=n + k, bias=bias)
    fast = Int8RowsLinear.from_linears(q8)
    w = q8.weight.double() * q8.scale.double()[:, None]  # (N, K), the weight int8 stands for
    b = q8.bias.double() if bias else 0
    gen = torch.Generator().manual_seed(k)
    for rows in [*range(1, 18), 40, KERNEL_ROWS]:  # every row tiling, a decode batch of 20 images, the most
        x = torch.randn(rows, k, generator=gen).to(torch.bfloat16)
        x[:, min(5, k - 1)] *= 50  # a heavy activation channel
        with torch.inference_mode():
            y = fast(x[None])  # (1, M, N): leading dims are kept
        assert y.shape == (1, rows, n) and y.dtype == torch.bfloat16
        y = y[0].double()
        x8, d = rounded_activations(x, GROUP)
        exact_x8 = x8 @ w.T + b
        terms = x8.abs() @ w.abs().T  # bounds fp32 summation error
        assert torch.all((y - exact_x8).abs() <= BF16_HALF_ULP * exact_x8.abs() + 1e-5 * terms), rows
        # against the true activations: |x - x8| <= d / 2 per element (W8A8's error beyond int8's)
        exact = x.double() @ w.T + b
        kp = d.shape[1] * GROUP
        wsum = F.pad(w.abs(), (0, kp - k)).view(n, -1, GROUP).sum(-1)  # (N, G)
        bound = d / 2 @ wsum.T  # (M, N)
        assert torch.all((y - exact).abs() <= bound * 1.001 + BF16_HALF_ULP * exact.abs() + 1e-5 * terms)


@needs_kernel
def test_the_activation_rounding_costs_less_than_the_weight_rounding():
    """What the docstring of kernels/int8.py says, on Gaussian weights and inputs of a Janus-Pro
    shape: W8A8's relative output error against the bf16 weight stays near int8's own."""
    gen = torch.Generator().manual_seed(0)
    linear = nn.Linear(2048, 512, bias=False)
    with torch.no_grad():
        linear.weight.normal_(0, 0.02, generator=gen)
    linear = linear.to(torch.bfloat16)
    q8 = Int8Linear.from_linear(linear)
    x = torch.randn(8, 2048, generator=gen).to(torch.bfloat16)
    exact = x.double() @ linear.weight.double().T

    def error(y):
        return ((y.double() - exact).norm() / exact.norm()).item()

    weight_only = error(x.double() @ (q8.weight.double() * q8.scale.double()[:, None]).T)
    w8a8 = error(Int8RowsLinear.from_linears(q8)(x))
    assert 0.005 < weight_only < 0.012 and w8a8 < 1.6 * weight_only, (weight_only, w8a8)


def test_many_rows_and_other_dtypes_multiply_the_widened_weight():
    q8 = int8_of(64, 96, seed=3, bias=True)
    fast = Int8RowsLinear.from_linears(q8)
    for x in (torch.randn(KERNEL_ROWS + 1, 96).to(torch.bfloat16), torch.randn(3, 96)):
        widened = q8.weight.to(x.dtype)
        assert torch.equal(fast(x), F.linear(x, widened) * q8.scale.to(x.dtype) + q8.bias.to(x.dtype))
