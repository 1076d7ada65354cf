"""The benchmark scripts import, and run.py's bookkeeping computes what it prints (the timings
themselves take minutes on full-size weights: `python benchmarks/run.py --quick`)."""

import importlib.util
from pathlib import Path

import pytest
import torch
from conftest import checkpoint_dir

from janus_cli.checkpoints.load import load_model

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def script(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["run", "load", "ray_engine", "quant_quality"])
def test_the_scripts_import(name):
    assert callable(script(name).main)


def test_the_summary_line_reads_the_cases_it_names():
    report = script("report")
    step = dict(dtype="bfloat16", compiled=False, context=40, peer_ms=300.0, floor_ms=60.0)

    def decode(scheme, n, janus_ms, fraction, **extra):
        return {**step, "case": f"{scheme} N={n}", "quantize": scheme, "n": n, "janus_ms": janus_ms,
                "speedup": 300.0 / janus_ms, "roofline_fraction": fraction, **extra}  # fmt: skip

    rows = [
        decode("none", 1, 100.0, 0.6),
        decode("none", 4, 150.0, 0.4),
        decode("int8", 1, 60.0, 0.5),
        decode("int8", 4, 120.0, 0.3),
        decode("int4", 1, 40.0, 0.8),
        decode("int4", 4, 75.0, 0.5),
        decode("none", 4, 150.0, 0.4, context=600, speedup=9.0),
        {"case": "JanusFlow step prompt 37", "speedup": 1.05},
        {"case": "JanusFlow step prompt 200", "speedup": 1.31},
        {"case": "peak RSS", "janus_gb": 4.0, "peer_gb": 5.0, "ratio": 0.8},
        {"case": "7B int4", "quantize": "int4", "rss_7b_gb": 5.25},
        {"case": "int4 KL heavy", "quantize": "int4", "variant": "heavy", "guided_kl_mean": 0.5},
        {"case": "int4 KL", "quantize": "int4", "variant": "random", "guided_kl_mean": 0.00123},
    ]
    assert report.summary(rows) == (
        "SUMMARY decode_speedup_n1=3.00 decode_speedup_n4=2.00 int8_speedup_n4=2.50 bandwidth_fraction=0.60 "
        "flow_prefix_speedup=1.31 peak_rss_ratio=0.80 int4_vs_bf16_n1=2.50 int4_vs_int8_n1=1.50 "
        "int4_vs_bf16_n4=2.00 int8_vs_bf16_n4=1.25 int4_floor_n1=0.80 rss_7b_int4_gb=5.25 "
        "int4_kl_mean=1.23e-03"
    )
    assert "| int4 N=1 | 40 ms | 300 ms | x7.50 | 80% of 60 ms |" in report.table(
        [{**rows[4], "images_per_s": 0.04}]
    )


def test_cache_and_weight_bytes_follow_the_config():
    run = script("workloads")
    model = load_model(checkpoint_dir("janus-pro-1b-tiny"), torch.bfloat16)
    c = model.cfg.llm
    assert (
        run.kv_bytes(model, rows=8, positions=600)
        == 2 * c.num_layers * c.num_kv_heads * c.head_dim * 8 * 600 * 2
    )
    parts = [
        model.language_model.model.layers,
        model.language_model.model.norm,
        model.gen_head,
        model.gen_aligner,
    ]
    assert run.decode_path_bytes(model) == 2 * sum(p.numel() for m in parts for p in m.parameters())


def test_timed_forward_times_each_call_and_restores_the_module():
    run = script("component_cases")
    linear = torch.nn.Linear(4, 4)
    with run.timed_forward(linear) as durations:
        linear(torch.ones(4))
        linear(torch.ones(4))
    linear(torch.ones(4))
    assert len(durations) == 2 and all(d > 0 for d in durations)
    assert "forward" not in vars(linear)


def test_the_peer_llama_shares_our_weights_and_computes_our_hidden_states():
    """The official-loop peer runs on our very tensors (the names are identical): transformers'
    Llama over the same embeddings must give our decoder's hidden states (fp32). Needs the
    `bench` extra."""
    pytest.importorskip("transformers")
    peers = script("peers")
    model = load_model(checkpoint_dir("janus-pro-1b-tiny"), torch.float32)
    peer = peers.peer_model(model)
    ours_ptrs = {t.data_ptr() for t in model.language_model.parameters()}
    assert {t.data_ptr() for t in peer.parameters()} <= ours_ptrs  # the same storage, no copies
    ids = torch.arange(3, 15)[None]  # (1, 12), within the tiny vocabulary
    embeds = model.language_model.model.embed_tokens(ids)  # (1, 12, C)
    llm = model.language_model
    llm.setup_cache(1, 16)
    with torch.no_grad():
        ours = llm(embeds, torch.arange(12), used=12)
        theirs = peer.model(inputs_embeds=embeds).last_hidden_state
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_the_peer_loop_builds_without_a_text_head_and_samples_our_codes():
    """run.py's fp32 and 7B cases load for generation only (no lm_head): the peer must still
    build (transformers 5.25 raised 'Cannot copy out of meta tensor' there), and its official
    loop, drawing from the same generator, must sample the codes our loop samples."""
    pytest.importorskip("transformers")
    from janus_cli.prompts import make_uncond_ids
    from janus_cli.sampling.autoregressive import generate_image_tokens

    peers = script("peers")
    model = load_model(checkpoint_dir("janus-pro-1b-tiny"), torch.float32, parts=("generation",))
    peer = peers.peer_model(model)
    assert peer.lm_head is None
    ids = [1, 5, 6, 7, 3]  # within the tiny vocabulary, pad 0
    theirs = [c.tolist() for c in peers.peer_codes(model, peer, ids, 2, 4)]
    gen = torch.Generator().manual_seed(0)

    def draw(guided):  # (N, V) guided logits -> (N,) codes, as the peer draws
        return torch.multinomial(guided.float().softmax(-1), 1, generator=gen)[:, 0]

    with torch.inference_mode():
        ours = generate_image_tokens(model, [ids], [make_uncond_ids(ids, 0)], [0, 0], 5.0, draw, 4)
        assert [c.tolist() for c in ours] == theirs


def test_the_flow_prediction_counts_linears_and_causal_attention():
    run = script("component_cases")
    model = load_model(checkpoint_dir("janusflow-1.3b-tiny"), torch.float32)
    c = model.cfg.llm
    d = c.num_heads * c.head_dim
    # per token
    linear = 2 * sum(p.numel() for p in model.language_model.model.layers.parameters() if p.dim() == 2)
    assert run.llm_flops(model.cfg, 0, 1) == linear + c.num_layers * 4 * d  # one token sees itself
    assert run.llm_flops(model.cfg, 10, 2) == 2 * linear + c.num_layers * 4 * d * (2 * 10 + 3)
    # a longer cached prefix saves the linears' share of it and keeps its attention
    full, cached = run.llm_flops(model.cfg, 0, 200 + 577), run.llm_flops(model.cfg, 200, 577)
    assert 1 < full / cached < (200 + 577) / 577


def test_quant_quality_runs_on_a_checkpoint_folder(tmp_path):
    """benchmarks/quant_quality.py as someone with real weights runs it (here the tiny fixture,
    4 tokens per image): the KL table for both schemes, and the bf16 | int8 | int4 grid."""
    import subprocess
    import sys

    from PIL import Image

    out = tmp_path / "grid.png"
    args = ["--model", str(checkpoint_dir("janus-pro-1b-tiny")), "--steps", "4", "--prompts", "1"]
    r = subprocess.run(
        [sys.executable, str(BENCHMARKS / "quant_quality.py"), *args, "--out", str(out), "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    table = [line for line in r.stdout.splitlines() if line.startswith(("| int8 |", "| int4 |"))]
    assert len(table) == 2, r.stdout
    w, h = Image.open(out).size
    assert (w, h) == (3 * 384, 384)  # columns bf16 | int8 | int4, a row per prompt
