"""Quantizing while loading, and quantized checkpoints (`janus convert --quantize`): the same
modules, bit for bit, as quantizing the loaded model; the pages of a consumed checkpoint tensor
given back; the scheme shown, recorded and enforced."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import assert_one_line_error, checkpoint_dir, run_janus

from janus_cli.checkpoints.load import load_model
from janus_cli.checkpoints.pages import release
from janus_cli.checkpoints.quantized import linear_parts, scheme_to_load
from janus_cli.errors import InputError
from janus_cli.models.quantize import SCHEMES, quantize_model
from janus_cli.pipelines.session import prepare_model
from janus_cli.sampling.autoregressive import generate_image_tokens

TINY = "janus-pro-1b-tiny"


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k
    assert [type(m) for m in a.modules()] == [type(m) for m in b.modules()]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """scheme -> the tiny checkpoint converted with --quantize SCHEME (once per module)."""
    done: dict[str, Path] = {}

    def get(scheme: str) -> Path:
        if scheme not in done:
            out = tmp_path_factory.mktemp("q") / scheme
            r = run_janus("convert", str(checkpoint_dir(TINY)), str(out), "--quantize", scheme, "--quiet")
            assert r.returncode == 0, r.stderr
            done[scheme] = out
        return done[scheme]

    yield get
    for out in done.values():
        shutil.rmtree(out)  # kept to the session's end, the suite's outputs fill CI's disk


@pytest.fixture
def int8_dir(converted) -> Path:
    return converted("int8")


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_quantizing_while_loading_gives_the_modules_quantizing_after_loading_gives(scheme):
    folder = checkpoint_dir(TINY)
    while_loading = load_model(folder, torch.bfloat16, quantize=scheme)
    plain = load_model(folder, torch.bfloat16)
    plan = linear_parts(plain)
    assert_same_state(while_loading, quantize_model(plain, scheme))
    assert plan and all(type(while_loading.get_submodule(n)) is not torch.nn.Linear for n in plan)


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_a_converted_checkpoint_loads_as_quantizing_at_load(converted, scheme):
    """The round trip: convert -> load gives the model (and so the logits and codes) that
    quantizing the original at load gives, in the dtype it was quantized from."""
    folder = converted(scheme)
    config = json.loads((folder / "config.json").read_text())
    assert config["quantization"] == {"scheme": scheme, "dtype": "bfloat16"}
    at_load = load_model(checkpoint_dir(TINY), torch.bfloat16, quantize=scheme)
    assert_same_state(load_model(folder, torch.bfloat16), at_load)  # --quantize none: as stored
    assert_same_state(load_model(folder, torch.bfloat16, quantize=scheme), at_load)
    if scheme == "int4":  # int4 codes and bf16 scales do not depend on the dtype loaded in (the
        # int8 head's scale does: stored rounded to bf16, computed in fp32 at an fp32 load)
        fp32 = load_model(checkpoint_dir(TINY), torch.float32, quantize=scheme)
        blocks = lambda m: m.language_model.model.layers  # noqa: E731
        assert_same_state(blocks(load_model(folder, torch.float32)), blocks(fp32))
    # and the same guided logits, prepared as a run prepares them
    logits = []
    for model in (load_model(folder, torch.bfloat16), at_load):
        model = prepare_model(model, torch.device("cpu"), torch.bfloat16)
        seen = []

        def greedy(guided, seen=seen):  # (1, V) -> (1,)
            seen.append(guided)
            return guided.argmax(-1)

        ids = [1, 5, 6, 7, 3]
        codes = generate_image_tokens(model, [ids], [[1, 0, 0, 0, 3]], [0], 5.0, greedy, 6)
        logits.append((torch.stack(list(codes)), torch.stack(seen)))
    assert torch.equal(logits[0][0], logits[1][0]) and torch.equal(logits[0][1], logits[1][1])


def test_models_info_shows_the_scheme(int8_dir):
    r = run_janus("models", "info", str(int8_dir))
    assert r.returncode == 0 and "quantization: int8" in r.stdout.splitlines(), r.stdout
    r = run_janus("models", "info", str(checkpoint_dir(TINY)), "--json")
    assert json.loads(r.stdout)["quantization"] == "none"


@pytest.mark.skipif(len(SCHEMES) < 2, reason="one scheme: no other to ask for")
def test_another_scheme_on_a_quantized_checkpoint_is_one_error_line(int8_dir):
    other = next(s for s in sorted(SCHEMES) if s != "int8")
    r = run_janus(
        "generate", "a fox", "-m", str(int8_dir), "--quantize", other, "-o", str(int8_dir.parent / "x")
    )
    assert_one_line_error(r, "is quantized as int8: load it with --quantize int8")


def test_the_recipe_records_the_scheme_a_quantized_checkpoint_ran(int8_dir, tmp_path):
    """--quantize left out on a checkpoint stored int8 runs int8: the PNG says so, and
    --from-image re-makes the image with it."""
    from PIL import Image

    r = run_janus("generate", "a fox", "-m", str(int8_dir), "--temperature", "0", "-o", str(tmp_path))
    assert r.returncode == 0, r.stderr
    (path,) = r.stdout.splitlines()
    assert json.loads(Image.open(path).text["janus-cli"])["quantize"] == "int8"
    again = run_janus("generate", "--from-image", path, "-o", str(tmp_path / "again"))
    assert again.returncode == 0, again.stderr
    (remade,) = again.stdout.splitlines()
    assert Image.open(remade).tobytes() == Image.open(path).tobytes()


def test_a_quantized_checkpoint_is_not_recast(int8_dir, tmp_path):
    r = run_janus("convert", str(int8_dir), str(tmp_path / "out"), "--dtype", "float32")
    assert_one_line_error(r, "is quantized as int8: --dtype would recast its scales")


def test_which_scheme_a_load_runs():
    assert scheme_to_load("none", "none", "m") == "none"
    assert scheme_to_load("int8", "none", "m") == "int8"
    assert scheme_to_load("none", "int8", "m") == "int8"  # as stored
    assert scheme_to_load("int8", "int8", "m") == "int8"
    with pytest.raises(InputError, match="m is quantized as int4: load it with --quantize int4"):
        scheme_to_load("int8", "int4", "m")


def resident_file_kb() -> int:
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("RssFile:")))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's /proc")
def test_release_gives_back_a_mapped_tensors_pages_and_keeps_its_values(tmp_path):
    path = tmp_path / "t.bin"
    expected = torch.arange(16 << 20, dtype=torch.int32)  # 64 MiB
    torch.save({"t": expected}, path)
    t = torch.load(path, mmap=True, weights_only=True)["t"]
    assert torch.equal(t, expected)  # every page read
    before = resident_file_kb()
    assert release(t)
    assert before - resident_file_kb() > 60 << 10  # KiB: nearly all 64 MiB
    assert torch.equal(t, expected)  # read again from the file
    anonymous = expected.clone()
    assert not release(anonymous) and torch.equal(anonymous, expected)  # never on plain memory
