"""Which int4 group size and rounding: the relative output error ||XW - XW'|| / ||XW|| of
full-size random weights, for group 32, 64 and 128, symmetric and asymmetric, with bf16
activations (W4A16: the weights' error alone) and with the kernel's int8 activations per group
(W4A8), on plain Gaussian inputs and on inputs whose 8 heavy channels are 20-100x the rest
(as LLM activations have), the weights' matching columns 10x. The numbers behind
models/int4.py's choice; seconds on one core.

    python benchmarks/int4_error.py [--rows 64]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from janus_cli.models.int4 import GROUPS, quantize_codes

SHAPES = {"qkv 6144x2048": (6144, 2048), "down 2048x5632": (2048, 5632)}


def dequantized(w: torch.Tensor, group: int, symmetric: bool) -> torch.Tensor:
    n, k = w.shape
    if not symmetric:
        q, s, m = quantize_codes(w, group)
        out = q.float().view(n, -1, group) * s.float()[..., None] + m.float()[..., None]
        return out.view(n, -1)[:, :k]
    g = F.pad(w.float(), (0, -k % group)).view(n, -1, group)
    s = (g.abs().amax(-1, keepdim=True) / 7).clamp(min=1e-30).to(torch.bfloat16).float()
    return (torch.round(g / s).clamp(-8, 7) * s).view(n, -1)[:, :k]


def int8_rows(x: torch.Tensor, group: int) -> torch.Tensor:
    """The kernel's activation rounding: int8 per row and group."""
    m, k = x.shape
    g = F.pad(x, (0, -k % group)).view(m, -1, group)
    d = g.abs().amax(-1, keepdim=True) / 127
    return (torch.round(g / d.clamp(min=1e-30)) * d).view(m, -1)[:, :k]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=64)
    a = ap.parse_args()
    gen = torch.Generator().manual_seed(0)
    print("relative output error, % (W4A16 / W4A8)")
    print(
        f"{'shape':<16} {'inputs':<8} "
        + " ".join(f"{f'g{g} {r}':>15}" for g in GROUPS for r in ("sym", "asym"))
    )
    for name, (n, k) in SHAPES.items():
        w = torch.randn(n, k, generator=gen).to(torch.bfloat16).float() * 0.02
        x = torch.randn(a.rows, k, generator=gen).to(torch.bfloat16).float()
        heavy = torch.randperm(k, generator=gen)[:8]
        xh, wh = x.clone(), w.clone()
        xh[:, heavy] *= torch.linspace(20, 100, 8)
        wh[:, heavy] *= 10
        for label, (xs, ws) in {"gauss": (x, w), "heavy": (xh, wh)}.items():
            ref = xs.double() @ ws.double().T
            cells = []
            for group in GROUPS:
                for symmetric in (True, False):
                    wq = dequantized(ws, group, symmetric).double()
                    a16 = (ref - xs.double() @ wq.T).norm() / ref.norm()
                    a8 = (ref - int8_rows(xs, group).double() @ wq.T).norm() / ref.norm()
                    cells.append(f"{a16 * 100:6.2f} / {a8 * 100:5.2f}")
            print(f"{name:<16} {label:<8} " + " ".join(f"{c:>15}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
