"""Pipeline contracts: seeds make image k independent of N and of the batch size (on JANUS_TEST_DEVICE)."""

import pytest
import torch
from conftest import checkpoint_dir, test_device

from janus_cli.errors import InputError
from janus_cli.pipelines import text_to_image
from janus_cli.pipelines.batching import ImageJob
from janus_cli.pipelines.events import ImageReady
from janus_cli.pipelines.images import make_images
from janus_cli.pipelines.session import open_session
from janus_cli.pipelines.text_to_image import GenerateSettings


@pytest.fixture(scope="module")
def session():
    s = open_session("tiny", checkpoint_dir("janus-pro-1b-tiny"), test_device(), torch.float32)
    s.decoded = []

    def record_codes(codes):  # skip the VQ decoder: these tests compare the sampled codes
        s.decoded.extend(codes)
        return torch.zeros(len(codes), 3, 8, 8)

    s.model.decode_codes = record_codes
    return s


def generate_images(session, prompt: str, s: GenerateSettings, batch_size: int = 4):
    return make_images(session, [ImageJob(prompt, s)], batch_size)


def codes_of(session, batch_size: int = 4, **settings) -> dict[int, torch.Tensor]:
    session.decoded.clear()
    events = generate_images(
        session, "a red fox", GenerateSettings(temperature=1.0, top_k=50, **settings), batch_size
    )
    seeds = [e.seed for e in events if isinstance(e, ImageReady)]
    return dict(zip(seeds, session.decoded, strict=True))


def test_image_k_does_not_depend_on_n_or_batch_size(session):
    three = codes_of(session, n=3, seed=7, batch_size=3)
    split = codes_of(session, n=3, seed=7, batch_size=2)
    alone = codes_of(session, n=1, seed=9, batch_size=1)
    assert sorted(three) == [7, 8, 9]
    for seed in three:
        assert torch.equal(three[seed], split[seed])
    assert torch.equal(three[9], alone[9])
    assert not torch.equal(three[7], three[8])  # different seeds, different images


def test_cfg_one_runs_without_unconditional_rows(session):
    assert len(codes_of(session, n=2, seed=1, cfg=1.0)) == 2


def test_over_long_prompt_is_refused(session):
    with pytest.raises(InputError, match="tokens"):
        list(generate_images(session, "word " * 5000, GenerateSettings()))


def test_mixed_prompts_in_one_batch_equal_one_by_one(session):
    settings = dict(temperature=1.0, top_k=50)
    jobs = [
        ImageJob("a red fox", GenerateSettings(n=2, seed=3, **settings), first=0),
        ImageJob(
            "a lighthouse on a cliff above a stormy sea at night",
            GenerateSettings(n=1, seed=11, **settings),
            first=2,
        ),
        ImageJob("owl", GenerateSettings(n=1, seed=5, **settings), first=3),
    ]
    session.decoded.clear()
    mixed = [e for e in make_images(session, jobs, 4) if isinstance(e, ImageReady)]
    batched = list(session.decoded)
    assert [e.index for e in mixed] == [0, 1, 2, 3]
    assert len({len(session.tokenizer.encode(j.prompt)) for j in jobs}) == 3  # really different lengths
    for job in jobs:
        for k in range(job.settings.n):
            session.decoded.clear()
            alone = GenerateSettings(n=1, seed=job.settings.seed + k, **settings)
            list(generate_images(session, job.prompt, alone))
            assert torch.equal(batched[job.first + k], session.decoded[0]), (job.prompt, k)


def test_images_with_other_sampling_settings_do_not_share_a_batch(session, monkeypatch):
    calls = []  # images per token loop
    loop = text_to_image.generate_image_tokens
    monkeypatch.setattr(
        text_to_image,
        "generate_image_tokens",
        lambda model, p, u, image_prompt, *a: (
            calls.append(len(image_prompt)) or loop(model, p, u, image_prompt, *a)
        ),
    )
    jobs = [
        ImageJob("a", GenerateSettings(n=2, cfg=5.0)),
        ImageJob("b", GenerateSettings(n=2, cfg=3.0), first=2),
    ]
    list(make_images(session, jobs, 4))
    assert calls == [2, 2]
