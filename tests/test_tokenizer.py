"""Tokenization, templates and placeholder expansion against the official processor's output."""

import pytest
from conftest import FIXTURES, golden_json

from janus_cli.prompts import generation_ids, make_uncond_ids, render, understanding_ids
from janus_cli.tokenizer import Tokenizer

VARIANTS = golden_json("tokenization")["variants"]


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request):
    name = request.param
    return VARIANTS[name], Tokenizer(FIXTURES / "checkpoints" / name, flow=name.startswith("janusflow"))


def test_raw_encode_decode(variant):
    golden, tok = variant
    for case in golden["raw"]:
        ids = tok.encode(case["text"])
        assert ids == case["ids"], case["text"]
        assert tok.decode(ids, skip_special=False) == case["decode"]
        assert tok.decode(ids) == case["decode_skip_special"]


def test_special_ids_roles_and_size(variant):
    golden, tok = variant
    for token, expected in golden["special_ids"].items():
        assert tok.tok.token_to_id(token) == expected, token
    assert list(tok.roles) == golden["roles"]
    assert tok.special.pad == golden["pad_id_used_by_processor"]
    assert len(tok) == golden["len_tokenizer_after_processor_init"]


def test_understanding_prompts(variant):
    golden, tok = variant
    for name, case in golden["understand"].items():
        messages = [m["content"] for m in case["conversation"][:-1]]
        ids = understanding_ids(tok, messages, 576)
        assert ids == case["input_ids"], name
        slots = sum(i == tok.special.image for i in ids) + (
            sum(i == tok.special.boi for i in ids) if tok.special.gen is not None else 0
        )
        assert slots == case["images_seq_mask_count"]


def test_generation_prompts(variant):
    golden, tok = variant
    for case in golden["generate"].values():
        assert render([(tok.roles[0], case["prompt"]), (tok.roles[1], "")], "") == case["sft_format"]
        for tag, ids in case["by_tag"].items():
            assert generation_ids(tok, case["prompt"], tok.tok.token_to_id(tag)) == ids


def test_components_tokenization():
    tok = Tokenizer(FIXTURES / "checkpoints" / "janus-pro-1b-tiny")
    for case in golden_json("components")["tokenization"].values():
        assert tok.encode(case["text"]) == case["ids"]


def test_make_uncond_ids_keeps_bos_and_tag():
    assert make_uncond_ids([1, 5, 6, 7, 9], pad_id=0) == [1, 0, 0, 0, 9]


def test_render_multi_turn_strips_and_separates():
    text = render([("U", " hi "), ("A", "yo"), ("U", "  q  "), ("A", "")], system="S")
    assert text == "S\n\nU: hi\n\nA: yo<｜end▁of▁sentence｜>U: q\n\nA:"
