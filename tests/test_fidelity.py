"""The fidelity measure of quantized decoding (sampling/fidelity.py): the KL math by hand, and
teacher forcing on the fixture (identical models differ by nothing)."""

import math

import torch
from conftest import checkpoint_dir

from janus_cli.checkpoints.load import load_model
from janus_cli.sampling.fidelity import compare, kl_divergence, teacher_forced


def test_kl_divergence_by_hand():
    p = torch.tensor([[0.5, 0.5], [0.9, 0.1]], dtype=torch.float64).log()
    q = torch.tensor([[0.25, 0.75], [0.9, 0.1]], dtype=torch.float64).log()
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    kl = kl_divergence(p, q)
    assert kl.shape == (2,) and kl.dtype == torch.float64
    assert math.isclose(kl[0].item(), expected, rel_tol=1e-12) and kl[1].item() < 1e-12
    assert kl_divergence(q, p)[0].item() != kl[0].item()  # not symmetric: reference first
    # a temperature divides the logits; logits shifted by a constant are the same distribution
    torch.testing.assert_close(kl_divergence(2 * p, 2 * q + 7.0, temperature=2.0), kl)


def test_compare_reports_mean_p99_and_top1():
    ref = torch.zeros(100, 4)
    ref[:, 0] = 1.0  # top-1 is code 0 everywhere
    cand = ref.clone()
    cand[:50, 1] = 2.0  # half the rows now prefer code 1
    out = compare(ref, cand)
    per_row = kl_divergence(ref, cand)
    assert math.isclose(out["kl_mean"], per_row.mean().item())
    assert math.isclose(out["kl_p99"], per_row.max().item())  # 50 equal rows above the 99th percentile
    assert out["top1"] == 0.5


def test_teacher_forcing_an_identical_model_changes_nothing():
    model = load_model(checkpoint_dir("janus-pro-1b-tiny"), torch.float32)
    prompt = [1, 5, 6, 7, 8, 3]
    out = teacher_forced(model, model, prompt, [1, 0, 0, 0, 0, 3], n=2, cfg=5.0, steps=6)
    assert out == {k: {"kl_mean": 0.0, "kl_p99": 0.0, "top1": 1.0} for k in ("guided", "conditional")}
