"""JanusFlow-1.3B (tiny): understanding and rectified-flow generation against the official goldens."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import (
    FIXTURES,
    assert_close,
    assert_uint8_close,
    checkpoint_dir,
    golden_json,
    golden_tensors,
    image_path,
    runtime_model,
)

from janus_cli.checkpoints.load import UNUSED_PREFIXES, build_model
from janus_cli.checkpoints.vae import load_vae
from janus_cli.config import JanusConfig
from janus_cli.errors import InputError
from janus_cli.imageio import PreprocessConfig, load_image, preprocess, to_uint8
from janus_cli.pipelines.session import Session
from janus_cli.pipelines.text_to_image_flow import flow_prompt_ids, initial_noise
from janus_cli.prompts import understanding_ids
from janus_cli.sampling.flow import (
    euler_step,
    prefill_prompt,
    recompute_velocity,
    sample_flow,
    time_grid,
    velocity,
)
from janus_cli.sampling.logits import apply_cfg, make_sampler
from janus_cli.sampling.text import generate_text
from janus_cli.tokenizer import Tokenizer

NAME = "janusflow-1.3b-tiny"
SEED = 12345
LATENT = (4, 48, 48)


@pytest.fixture(scope="module")
def folder():
    return checkpoint_dir(NAME)


@pytest.fixture(scope="module")
def model(folder):
    return runtime_model(NAME)


@pytest.fixture(scope="module")
def tok(folder):
    return Tokenizer(folder, flow=True)


@pytest.fixture(scope="module")
def gj():
    return golden_json(NAME)


@pytest.fixture(scope="module")
def gt():
    return golden_tensors(NAME)


@pytest.fixture(scope="module")
def session(folder, model, tok):
    cfg = JanusConfig.from_file(folder / "config.json")
    return Session(NAME, folder, cfg, model, tok, PreprocessConfig(), torch.device("cpu"), torch.float32)


@pytest.fixture(scope="module")
def prompt(session, gj):
    return flow_prompt_ids(session, gj["generate"]["prompt"])


@pytest.fixture(scope="module")
def five_steps(model, prompt, gt):
    ids, uncond = prompt
    return list(sample_flow(model, [ids], [uncond], [0, 0], gt["generate.z0"], 5, 2.0))


def test_parameters_are_the_checkpoint_keys(folder):
    manifest = json.loads((FIXTURES / "checkpoints" / NAME / "manifest.json").read_text())
    keys = {
        t["key"]: tuple(t["shape"]) for t in manifest["tensors"] if not t["key"].startswith(UNUSED_PREFIXES)
    }
    ours = {
        k: tuple(v.shape)
        for k, v in build_model(JanusConfig.from_file(folder / "config.json")).state_dict().items()
    }
    assert ours == keys


@torch.inference_mode()
def test_understanding_matches_golden(model, tok, gj, gt):
    u = gj["understand"]
    ids = understanding_ids(tok, ["<image_placeholder>\n" + u["question"]], 576)
    assert ids == u["input_ids"]
    x = preprocess(load_image(image_path(u["image"])))[None]
    ids_t = torch.tensor([ids])
    slots = model.image_slots(ids_t, tok.special)
    assert int(slots.sum()) == 577
    embeds = model.embed_prompt(ids_t, x, slots)
    assert torch.equal(embeds[0, ids.index(tok.special.boi)], model.beg_of_und_embed[0])
    llm = model.language_model
    llm.setup_cache(1, len(ids))
    hidden = llm(embeds, torch.arange(len(ids)), used=len(ids))[:, -1]
    assert_close(llm.logits(hidden)[0], gt["understand.prefill_logits_last"])
    greedy = [int(t[0]) for t in generate_text(llm, embeds, 24, make_sampler(0), tok.special.eos)]
    assert greedy == u["greedy_ids"]


def test_prompt_ids(session, prompt, gj):
    g = gj["generate"]
    ids, uncond = prompt
    assert ids == g["input_ids"] and uncond == g["uncond_ids"]
    assert len(ids) - 1 == g["prefix_len"]
    with pytest.raises(InputError, match="fit with the image"):
        flow_prompt_ids(session, "fox " * 4000)


def test_noise(gt):
    official = initial_noise(2, SEED, "official", LATENT)
    assert official.dtype == torch.bfloat16
    assert torch.equal(official.float(), gt["generate.z0"])
    with torch.random.fork_rng():  # the demo's global-RNG draw is the same stream
        torch.manual_seed(SEED)
        assert torch.equal(torch.randn((2, *LATENT), dtype=torch.bfloat16), official)
    per_image = initial_noise(2, SEED, "per-image", LATENT)
    assert torch.equal(per_image[:1], initial_noise(1, SEED, "official", LATENT))
    assert torch.equal(per_image[1:], initial_noise(1, SEED + 1, "official", LATENT))


def test_step0_matches_golden(model, prompt, gt):
    ids, uncond = prompt
    z0 = gt["generate.z0"]
    ts, _ = time_grid(5, torch.float32)
    t = ts[0].expand(2)
    with torch.inference_mode():
        assert_close(model.encode_latent(z0, t)[1], gt["generate.step0_t_emb"])
        v = velocity(model, prefill_prompt(model, [ids], [uncond], [0, 0], 576), z0, t)
    assert v.shape == (4, *LATENT)
    assert_close(v[:2], gt["generate.step0_v_cond"])
    assert_close(v[2:], gt["generate.step0_v_uncond"])


@pytest.mark.slow
def test_prefix_cache_equals_full_recompute(model, prompt, gt):
    """A later step reuses the prefix and overwrites the time/latent slots of an earlier one."""
    ids, uncond = prompt
    z0, z1 = gt["generate.z0"], gt["generate.z_after_5_steps"]
    ts, _ = time_grid(30, torch.float32)
    fp = prefill_prompt(model, [ids], [uncond], [0, 0], 576)
    velocity(model, fp, z0, ts[0].expand(2))
    cached = velocity(model, fp, z1, ts[17].expand(2))
    assert_close(cached, recompute_velocity(model, ids, uncond, z1, ts[17].expand(2)), rel=1e-5)


def test_prompts_of_different_lengths_share_a_batch(model, session, gt):
    """Left-padded mixed prompts: each image's velocities are those of its prompt alone."""
    (a, ua), (b, ub) = (
        flow_prompt_ids(session, "a fox"),
        flow_prompt_ids(session, "a lighthouse on a cliff above a stormy sea"),
    )
    assert len(a) != len(b)
    z, t = gt["generate.z0"], time_grid(30, torch.float32)[0][17].expand(2)  # (2, L, H, W), (2,)
    v = velocity(
        model, prefill_prompt(model, [a, b], [ua, ub], [1, 0], 576), z, t
    )  # image 0: prompt b, image 1: prompt a
    assert_close(v[[0, 2]], recompute_velocity(model, b, ub, z[:1], t[:1]), rel=1e-5)
    assert_close(v[[1, 3]], recompute_velocity(model, a, ua, z[1:], t[1:]), rel=1e-5)


@pytest.mark.slow
def test_five_steps_match_golden(five_steps, gt):
    assert len(five_steps) == 5
    assert_close(five_steps[-1], gt["generate.z_after_5_steps"], rel=1e-3)


@pytest.mark.slow
def test_five_step_images_match_golden(five_steps, gt):
    vae = load_vae(checkpoint_dir(f"{NAME}-vae"), dtype=torch.float32)
    with torch.inference_mode():
        pixels = to_uint8(vae.decode(five_steps[-1]))
    assert_uint8_close(torch.from_numpy(pixels), gt["generate.images_uint8_5_steps"])


@pytest.mark.slow
def test_thirty_steps_match_golden(model, prompt, gt):
    ids, uncond = prompt
    *_, z = sample_flow(model, [ids], [uncond], [0, 0], gt["generate.z0"], 30, 2.0)
    assert_close(z, gt["generate.z_after_30_steps"], rel=1e-3)
    vae = load_vae(checkpoint_dir(f"{NAME}-vae"), dtype=torch.float32)
    with torch.inference_mode():
        pixels = to_uint8(vae.decode(z))
    assert_uint8_close(torch.from_numpy(pixels), gt["generate.images_uint8_30_steps"])


def test_euler_integrates_a_straight_line_exactly():
    x0 = torch.randn(2, 4, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x1 = torch.randn(2, 4, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ts, dt = time_grid(8, torch.float64)
    z = x0
    for _ in ts:
        z = euler_step(z, x1 - x0, dt)  # the rectified-flow field of the line x0 -> x1
    assert torch.allclose(z, x1, rtol=0, atol=1e-12)


def test_time_grid_is_the_official_schedule():
    t, dt = time_grid(30, torch.bfloat16)
    assert dt.item() == 0.033447265625
    assert t[:4].tolist() == [0.0, 33.25, 66.5, 100.0] and t[-1].item() == 968.0
    t32, dt32 = time_grid(5, torch.float32)
    assert t32.tolist() == [0.0, 200.0, 400.0, 600.0, 800.0] and dt32.item() == torch.tensor(0.2).item()


def test_velocity_cfg_is_the_official_formula():
    vc, vu = torch.tensor([1.0, -2.0, 3.5]), torch.tensor([0.5, 1.0, -1.0])
    w = 2.0
    assert torch.allclose(apply_cfg(vc, vu, w), w * vc - (w - 1) * vu)
