"""Pure sampling functions, checked on hand-made vectors."""

import math

import pytest
import torch

from janus_cli.sampling.logits import apply_cfg, make_sampler, top_k_filter, top_p_filter

NEG = float("-inf")


def test_apply_cfg_is_uncond_plus_scaled_difference():
    cond, uncond = torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 1.0]])
    assert apply_cfg(cond, uncond, 5.0).tolist() == [[6.0, -4.0]]
    assert torch.equal(apply_cfg(cond, uncond, 1.0), cond)
    # JanusFlow's form w*v_c - (w-1)*v_u is the same formula
    assert torch.allclose(apply_cfg(cond, uncond, 2.0), 2 * cond - uncond)


def test_top_k_keeps_k_largest():
    x = torch.tensor([[1.0, 4.0, 3.0, 2.0]])
    assert top_k_filter(x, 2).tolist() == [[NEG, 4.0, 3.0, NEG]]
    assert torch.equal(top_k_filter(x, 10), x)


def test_top_p_keeps_smallest_set_reaching_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    kept = top_p_filter(logits, 0.75).isfinite().tolist()
    assert kept == [[True, True, False, False]]
    assert top_p_filter(logits, 0.1).isfinite().tolist() == [[True, False, False, False]]
    assert top_p_filter(logits, 1.0).isfinite().all()


def test_greedy_sampler_is_argmax():
    assert make_sampler(0.0)(torch.tensor([[0.1, 3.0, 2.0], [5.0, 0.0, 0.0]])).tolist() == [1, 0]


def test_sampler_rows_use_their_own_generators():
    logits = torch.zeros(2, 1000)

    def draw(seeds):
        return make_sampler(1.0, generators=[torch.Generator().manual_seed(s) for s in seeds])(logits)

    a, b = draw([3, 4]), draw([3, 4])
    assert torch.equal(a, b)
    assert draw([4, 3]).tolist() == b.flip(0).tolist()  # a row's draw depends only on its seed


def test_sampler_respects_top_k_and_temperature():
    logits = torch.tensor([[math.log(0.6), math.log(0.4), -100.0]])
    gens = [torch.Generator().manual_seed(0)]
    sampler = make_sampler(1.0, top_k=1, generators=gens)
    assert {sampler(logits).item() for _ in range(20)} == {0}


def test_sampler_needs_one_generator_per_row():
    with pytest.raises(ValueError):
        make_sampler(1.0, generators=[torch.Generator()])(torch.zeros(2, 4))
