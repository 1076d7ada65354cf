"""Our weight synthesis reproduces values of the reference `synth.py` (copied from it)."""

import numpy as np
import torch
from synth import synth_bits, synth_tensor


def test_readme_check_value():
    x = synth_tensor("vision_model.vision_tower.blocks.0.mlp.fc1.weight", (4096, 1024), 0)
    assert x[0, :4].float().tolist() == [
        0.010009765625,
        -0.0289306640625,
        -0.0016021728515625,
        -0.021728515625,
    ]


def test_bit_patterns_from_reference():
    # norm weight (1 + 0.1u), bias (0.02u), 4-D conv (fan-in scaling), each under another seed
    assert synth_bits("language_model.model.norm.weight", (64,), 1)[:4].tolist() == [
        16258,
        16253,
        16263,
        16264,
    ]
    assert synth_bits("gen_head.vision_head.bias", (16384,), 3)[-3:].tolist() == [15139, 15410, 15478]
    conv = synth_bits("gen_vision_model.decoder.conv_out.weight", (3, 128, 3, 3), 2)
    assert conv[2, 127, 2].tolist() == [48063, 15519, 48230]


def test_tensor_is_bfloat16_view_of_bits():
    t = synth_tensor("a.weight", (3, 5), 0)
    assert t.dtype == torch.bfloat16 and t.shape == (3, 5)
    assert np.array_equal(t.view(torch.int16).numpy().view(np.uint16), synth_bits("a.weight", (3, 5), 0))
