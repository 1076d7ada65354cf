"""`--batch-size auto`: the KV-cache arithmetic, its limits, and what the command line does."""

from pathlib import Path

import pytest
import torch
from conftest import assert_one_line_error, checkpoint_dir
from conftest import run_janus as run

from janus_cli.config import JanusConfig
from janus_cli.pipelines.memory import MOST, SHARE, auto_batch_size, free_bytes, kv_bytes_per_image

CPU = torch.device("cpu")
MiB = 2**20


def published(name: str):
    return JanusConfig.from_file(
        Path(__file__).parents[1] / "weights" / "published" / name / "config.json"
    ).llm


@pytest.mark.parametrize("name,per_position", [("Janus-Pro-1B", 192 * 1024), ("Janus-Pro-7B", 480 * 1024)])
def test_kv_bytes_follow_layers_heads_and_positions(name, per_position):
    cfg = published(name)
    # 2 x layers x hidden x 2 bytes
    assert kv_bytes_per_image(cfg, 1, torch.bfloat16, guided=False) == per_position
    # CFG: two rows
    assert kv_bytes_per_image(cfg, 616, torch.bfloat16, guided=True) == 2 * 616 * per_position
    assert kv_bytes_per_image(cfg, 616, torch.float32, guided=True) == 4 * 616 * per_position


def test_auto_fits_half_the_free_memory_within_the_limits():
    per = 231 * MiB
    assert auto_batch_size(per, 10 * per, CPU, images=100) == int(10 * SHARE)
    assert auto_batch_size(per, 1000 * per, CPU, images=100) == MOST["cpu"]
    assert auto_batch_size(per, 1000 * per, torch.device("cuda"), images=100) == MOST["cuda"]
    assert auto_batch_size(per, 1000 * per, CPU, images=3) == 3  # never more than the run makes
    assert auto_batch_size(per, per, CPU, images=8) == 1  # at least one image, even when tight
    assert auto_batch_size(per, None, CPU, images=8) == 4  # free memory unknown


def test_free_memory_is_read_on_this_machine():
    free = free_bytes(CPU)
    assert free is None or 0 < free < 2**50


def test_auto_batch_size_is_reported_and_bad_values_are_one_line_errors(tmp_path):
    tiny = str(checkpoint_dir("janus-pro-1b-tiny"))
    r = run("generate", "a red fox", "-m", tiny, "-n", "3", "--dtype", "float32", "-o", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "batch size 3 (auto: " in r.stderr and len(r.stdout.splitlines()) == 3
    assert_one_line_error(
        run("generate", "a cat", "-b", "0"), "--batch-size 0: give a positive number or auto"
    )
    assert_one_line_error(run("flow-generate", "a cat", "--batch-size", "many"), "--batch-size many")


def test_a_run_whose_prompts_were_all_set_aside_needs_no_memory_reading():
    from janus_cli.pipelines.images import batch_size

    assert batch_size(None, [], {}, None) == (1, None)  # --keep-going refused every prompt
    assert batch_size(None, [], {}, 3) == (3, None)
