"""The VQ-16 encoder and quantizer against the official code's goldens (reference README,
"vq_encode"): the training-target preprocessing exact, latents before quantization within the
float tolerance, codes exact wherever the golden's margin to the second-nearest code allows."""

from __future__ import annotations

import hashlib

import pytest
import torch
from conftest import assert_close, checkpoint_dir, golden_json, golden_tensors, image_path, test_device

from janus_cli.checkpoints.load import load_model
from janus_cli.imageio import generation_target, load_image

NAMES = ("square", "landscape", "portrait", "rgba", "grey")


@pytest.fixture(scope="module")
def golden():
    return golden_json("vq_encode"), golden_tensors("vq_encode")


@pytest.fixture(scope="module")
def encoded(golden):
    doc, _ = golden
    device = test_device()
    model = load_model(
        checkpoint_dir("janus-pro-1b-tiny"), torch.float32, device, parts=("generation", "encoding")
    )
    images = torch.stack([generation_target(load_image(image_path(doc["images"][n]["file"]))) for n in NAMES])
    vq = model.gen_vision_model
    with torch.inference_mode():
        latents = vq.latents(images.to(device))  # (5, 8, 24, 24)
        codes = vq.quantize.nearest(latents)  # (5, 576)
        assert torch.equal(codes, model.encode_images(images.to(device)))
    return images, latents.cpu(), codes.cpu(), vq.cpu()


@pytest.mark.parametrize("i", range(len(NAMES)))
def test_encoder_matches_the_official_code(golden, encoded, i):
    name = NAMES[i]
    doc, g = golden
    images, latents, codes, vq = encoded
    # the preprocessing, bit for bit: the golden's input tensor, kept as its digest (8.8 MB less)
    ours = hashlib.sha256(images[i : i + 1].contiguous().numpy().tobytes()).hexdigest()
    assert ours == doc["input_sha256"][name]
    assert_close(latents[i : i + 1], g[f"prequant.{name}"])
    sure = g[f"margin.{name}"] > 1e-4  # near-ties may flip with fp32 rounding
    assert sure.float().mean() > 0.9
    assert torch.equal(codes[i][sure], g[f"codes.{name}"][sure])
    quant = vq.quantize.codebook()[g[f"codes.{name}"]].view(1, 24, 24, -1).permute(0, 3, 1, 2)
    assert_close(quant, g[f"quant.{name}"])  # (1, 8, 24, 24): the codebook rows the codes name


def test_the_encoder_is_loaded_only_on_request():
    folder = checkpoint_dir("janus-pro-1b-tiny")
    for parts in (None, ("generation",)):
        model = load_model(folder, torch.float32, parts=parts)
        assert model.gen_vision_model.encoder is None and model.gen_vision_model.quant_conv is None
        assert model.gen_vision_model.decoder is not None
    model = load_model(folder, torch.float32, parts=("understanding", "encoding"))
    assert model.gen_vision_model is None  # the encoder lives inside a part left out
