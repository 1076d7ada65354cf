"""--compile: the fixed-shape image-token step under torch.compile makes the tokens the eager
loop makes (fp32), reaches the pipeline from the command line, fails cleanly without a compiler,
and leaves int4's CPU kernel out of the graph."""

import shutil

import pytest
import torch
from conftest import assert_one_line_error, checkpoint_dir, run_janus

from janus_cli.errors import InputError
from janus_cli.models.layout import PackedLinear
from janus_cli.pipelines.session import open_session
from janus_cli.pipelines.text_to_image import make_uncond_ids, prompt_ids
from janus_cli.runtime import check_compile, make_generator
from janus_cli.sampling.autoregressive import generate_image_tokens
from janus_cli.sampling.logits import make_sampler

needs_compiler = pytest.mark.skipif(
    not (shutil.which("g++") or shutil.which("clang++")), reason="inductor needs a C++ compiler"
)


def image_tokens(session, compile: bool) -> torch.Tensor:
    """Three images from two prompts of different lengths (so prefix sharing and left padding
    both run), with CFG and seeded sampling: (3, 576) codes."""
    cond = [prompt_ids(session, p) for p in ("a cat", "a red fox asleep in deep snow at dusk")]
    uncond = [make_uncond_ids(p, session.tokenizer.special.pad) for p in cond]
    sampler = make_sampler(1.0, None, None, [make_generator(s) for s in (7, 8, 9)])
    steps = generate_image_tokens(
        session.model, cond, uncond, [0, 1, 1], 5.0, sampler, session.config.image_tokens, compile
    )
    return torch.stack(list(steps), dim=1)


@needs_compiler
def test_compiled_steps_make_the_eager_tokens():
    folder, cpu = checkpoint_dir("janus-pro-1b-tiny"), torch.device("cpu")
    eager = image_tokens(open_session("tiny", folder, cpu, torch.float32), compile=False)
    compiled_session = open_session("tiny", folder, cpu, torch.float32, compile=True)
    # inductor cannot trace them
    assert not any(isinstance(m, PackedLinear) for m in compiled_session.model.modules())
    counters = torch._dynamo.utils.counters
    counters.clear()
    assert torch.equal(image_tokens(compiled_session, compile=True), eager)
    assert counters["stats"]["unique_graphs"] >= 1  # the steps did run compiled


def test_compile_without_a_compiler_is_refused(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(InputError, match="C\\+\\+ compiler"):
        check_compile(torch.device("cpu"))
    check_compile(torch.device("cuda"))  # CUDA kernels come from Triton, not a host compiler


def test_cli_compile_reaches_the_session(tmp_path):
    """The flag travels from `janus generate` to the session: with no usable compiler it stops
    before any work, with one error line."""
    model = str(checkpoint_dir("janus-pro-1b-tiny"))
    result = run_janus(
        "generate", "a cat", "-m", model, "--compile", "-o", str(tmp_path), env={"CXX": "/no/such/c++"}
    )
    assert_one_line_error(result, "--compile on the CPU needs a C++ compiler")
    assert list(tmp_path.iterdir()) == []


def test_int4_linears_run_their_cpu_kernel_between_graphs():
    """--compile with int4 on the CPU: the kernel call is left out of the graph, not traced
    (dynamo walked into our kernel's loader, warned twice, and the fixture's image took twice
    eager's time)."""
    import warnings

    from torch import nn

    from janus_cli.models.int4 import Int4Linear

    torch.manual_seed(0)
    lin = Int4Linear.from_linear(nn.Linear(256, 64).to(torch.bfloat16))
    x = torch.randn(2, 256).to(torch.bfloat16)
    eager = lin(x)
    torch._dynamo.reset()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        compiled = torch.compile(lin, backend="eager")(x)
    assert torch.equal(compiled, eager)
    assert [str(w.message) for w in seen] == []
