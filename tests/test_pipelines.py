"""Pipeline contracts: seeds make image k independent of N and of the batch size."""

import pytest
import torch
from conftest import checkpoint_dir

from janus_cli.errors import InputError
from janus_cli.pipelines.events import ImageReady
from janus_cli.pipelines.session import open_session
from janus_cli.pipelines.text_to_image import GenerateSettings, generate_images


@pytest.fixture(scope="module")
def session():
    s = open_session("tiny", checkpoint_dir("janus-pro-1b-tiny"), torch.device("cpu"), torch.float32)
    s.decoded = []

    def record_codes(codes):  # skip the VQ decoder: these tests compare the sampled codes
        s.decoded.extend(codes)
        return torch.zeros(len(codes), 3, 8, 8)

    s.model.decode_codes = record_codes
    return s


def codes_of(session, **settings) -> dict[int, torch.Tensor]:
    session.decoded.clear()
    events = generate_images(session, "a red fox", GenerateSettings(temperature=1.0, top_k=50, **settings))
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
