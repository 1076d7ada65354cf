"""Parity with the goldens of the official code (fp32, CPU) for Janus, Janus-Pro 1B and 7B.

Covers the three published layouts: single `.bin` (pro-1b), sharded `.bin` (pro-7b) and
`model.safetensors` (1.3b).
"""

import pytest
import torch
from conftest import (
    assert_close,
    assert_uint8_close,
    checkpoint_dir,
    golden_json,
    golden_tensors,
    image_path,
    runtime_model,
)

from janus_cli.imageio import load_image, preprocess, to_uint8
from janus_cli.prompts import generation_ids, make_uncond_ids, understanding_ids
from janus_cli.sampling.autoregressive import generate_image_tokens
from janus_cli.sampling.logits import make_sampler
from janus_cli.sampling.text import generate_text
from janus_cli.tokenizer import Tokenizer

CHECKPOINTS = ["janus-pro-1b-tiny", "janus-pro-7b-tiny", "janus-1.3b-tiny"]
IMAGES = {
    "square": "square0.png",
    "landscape": "landscape0.jpg",
    "portrait": "portrait0.png",
    "rgba": "rgba0.png",
    "grey": "grey0.png",
}


@pytest.fixture(scope="module", params=CHECKPOINTS)
def case(request):
    folder = checkpoint_dir(request.param)
    model = runtime_model(request.param)
    return model, Tokenizer(folder), golden_json(request.param), golden_tensors(request.param)


@pytest.fixture(scope="module")
def pro1b():
    return runtime_model("janus-pro-1b-tiny")


@pytest.mark.parametrize("name", IMAGES)
def test_preprocess_matches_official_processor(components, name):
    x = preprocess(load_image(image_path(IMAGES[name])))
    assert torch.equal(x, components[f"preprocess.{name}"])


@torch.inference_mode()
def test_siglip_and_aligner(pro1b, components):
    feats = pro1b.vision_model(components["preprocess.square"][None])[0]
    assert_close(feats, components["siglip.features"])
    assert_close(pro1b.aligner(feats), components["aligner.output"])


def test_vq_decode(pro1b, components):
    images = pro1b.decode_codes(components["vq.codes"])
    assert_close(images[0], components["vq.decoded"])
    assert_uint8_close(torch.from_numpy(to_uint8(images)[0]), components["vq.uint8"])


@torch.inference_mode()
def test_understanding_logits_and_greedy_tokens(case):
    model, tok, gj, gt = case
    u = gj["understand"]
    ids = understanding_ids(tok, ["<image_placeholder>\n" + u["question"]], 576)
    assert ids == u["input_ids"]
    ids_t = torch.tensor([ids])
    pixels = preprocess(load_image(image_path(u["image"])))[None]
    embeds = model.embed_prompt(ids_t, pixels, model.image_slots(ids_t, tok.special))
    llm = model.language_model
    llm.setup_cache(rows=1, length=len(ids))
    logits = llm.logits(llm(embeds, torch.arange(len(ids)))[:, -1])[0]
    assert_close(logits, gt["understand.prefill_logits_last"])
    tokens = [int(t[0]) for t in generate_text(llm, embeds, 24, make_sampler(0.0), tok.special.eos)]
    assert tokens == u["greedy_ids"]
    assert tok.decode(tokens) == u["greedy_text"]


def test_generation_prompt_rows(case):
    _, tok, gj, _ = case
    g = gj["generate"]
    ids = generation_ids(tok, g["prompt"])
    assert ids == g["input_ids"]
    assert make_uncond_ids(ids, tok.special.pad) == g["uncond_ids"]


def test_teacher_forced_cfg_logits(case):
    model, tok, gj, gt = case
    ids = gj["generate"]["input_ids"]
    forced = gt["generate.teacher_forced_codes"]  # (P, 4)
    seen = []

    def teacher(logits):
        seen.append(logits.clone())
        return forced[:, len(seen) - 1]

    list(
        generate_image_tokens(model, [ids], [make_uncond_ids(ids, tok.special.pad)], [0, 0], 5.0, teacher, 4)
    )
    assert_close(torch.stack(seen), gt["generate.teacher_forced_cfg_logits"])


def test_greedy_image_generation(case):
    model, tok, gj, gt = case
    ids = gj["generate"]["input_ids"]
    columns = generate_image_tokens(
        model, [ids], [make_uncond_ids(ids, tok.special.pad)], [0, 0], 5.0, make_sampler(0.0), 576
    )
    codes = torch.stack(list(columns), dim=1)
    assert torch.equal(codes, gt["generate.greedy_codes"])
    image = model.decode_codes(codes[:1])
    assert_close(image[0], gt["generate.greedy_decoded_first"])
    assert_uint8_close(torch.from_numpy(to_uint8(image)[0]), gt["generate.greedy_images_uint8"][0])
