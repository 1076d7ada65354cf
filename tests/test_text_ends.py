"""An answer that ends inside a UTF-8 character (byte-level BPE splits characters across
tokens): streamed or not, every front end gives the same text. The server's side is in
test_server_security.py, on that module's server.

The case: the tiny Janus-Pro fixture, sampled at temperature 1 with seed 239, answers one token,
'ĠðŁ' (a space and the first two bytes of an emoji), which decodes to " \ufffd"."""

from __future__ import annotations

import pytest
from conftest import checkpoint_dir, golden_json, image_path
from conftest import run_janus as run

import janus_cli
from janus_cli.tokenizer import Tokenizer

PRO = "janus-pro-1b-tiny"
HALF_A_CHARACTER = {"temperature": 1.0, "seed": 239, "max_tokens": 1}  # answers ' \ufffd'


@pytest.fixture(scope="module")
def tok():
    return Tokenizer(checkpoint_dir(PRO))


def pieces(tok, ids: list[int]) -> list[str]:
    from janus_cli.tokenizer import Detokenizer

    d = Detokenizer(tok)
    out = [d.step(ids[: k + 1]) for k in range(len(ids))]
    return out + [d.flush(ids)]


def test_pieces_never_split_a_character_and_join_to_the_decoded_text(tok):
    ids = tok.encode("héllo 日本 🙂")[1:]  # without BOS: 'Ã' '©' split é, 'ĠðŁ' 'Ļ' 'Ĥ' split 🙂
    out = pieces(tok, ids)
    assert "".join(out) == tok.decode(ids) == "héllo 日本 🙂"
    assert "\ufffd" not in "".join(out[:-1]) and out[-1] == ""
    # cut inside 🙂: the held-back tail comes out at the end, as decode shows it
    cut = ids[:-2]
    out = pieces(tok, cut)
    assert "".join(out) == tok.decode(cut) == "héllo 日本 \ufffd" and out[-1] == " \ufffd"


@pytest.fixture(scope="module")
def case():
    u = golden_json(PRO)["understand"]
    return str(image_path(u["image"])), u["question"]


@pytest.fixture(scope="module")
def pro():
    return janus_cli.load(str(checkpoint_dir(PRO)), device="cpu", dtype="float32")


def test_the_api_streamed_or_not_gives_the_decoded_text(pro, case):
    image, question = case
    text = pro.describe(image, question, **HALF_A_CHARACTER)
    assert text == " \ufffd"
    # describe and Chat.ask join the streamed pieces; the history keeps the whole answer
    chat = pro.chat([image], **HALF_A_CHARACTER)
    assert chat.ask(question) == chat.history[-1]["text"] == text


def test_the_command_line_streamed_or_not_gives_the_decoded_text(case):
    image, question = case
    args = ["describe", image, "-p", question, "-m", str(checkpoint_dir(PRO)), "--dtype", "float32", "-q"]
    args += ["--temperature", "1", "--seed", "239", "--max-tokens", "1"]
    r = run(*args)
    assert r.returncode == 0, r.stderr
    assert r.stdout == " \ufffd\n"
