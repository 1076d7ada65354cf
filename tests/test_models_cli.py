"""`janus models list | pull | info`: no network needed except for pull, one-line errors."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import checkpoint_dir
from typer.testing import CliRunner

from janus_cli.checkpoints.hub import registry
from janus_cli.checkpoints.info import bundled_config
from janus_cli.checkpoints.load import checkpoint_key_to_param
from janus_cli.cli import app

PUBLISHED = Path(__file__).parents[1] / "weights" / "published"
ALIASES = {
    "janus-pro-1b": "Janus-Pro-1B",
    "janus-pro-7b": "Janus-Pro-7B",
    "janus-1.3b": "Janus-1.3B",
    "janusflow-1.3b": "JanusFlow-1.3B",
    "sdxl-vae": "sdxl-vae",
}


def janus(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    """The CLI with an empty Hugging Face cache and no network."""
    env = {**os.environ, "HF_HUB_CACHE": str(tmp / "hub"), "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "janus_cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.mark.parametrize("alias", list(ALIASES))
def test_bundled_configs_are_the_published_ones(alias):
    assert bundled_config(alias) == json.loads((PUBLISHED / ALIASES[alias] / "config.json").read_text())


def test_list_json_offline(tmp_path):
    r = janus("models", "list", "--json", tmp=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["name"] for row in rows] == list(registry())
    assert all(row["cached"] is False and row["download_gb"] > 0 for row in rows)
    plain = janus("models", tmp=tmp_path)
    assert plain.returncode == 0 and "deepseek-ai/Janus-Pro-7B" in plain.stdout and "CACHED" in plain.stdout


def test_pull_offline_is_one_line_error(tmp_path):
    r = janus("models", "pull", "janus-pro-1b", tmp=tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and r.stdout == "" and len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ") and "deepseek-ai/Janus-Pro-1B" in lines[0]


@pytest.mark.parametrize("alias", ["janus-pro-1b", "janus-pro-7b", "janusflow-1.3b"])
def test_info_of_alias_not_downloaded(alias, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr("janus_cli.checkpoints.info.cached_path", lambda repo: None)
    r = CliRunner().invoke(app, ["models", "info", alias, "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["config"].startswith("bundled") and doc["folder"] is None
    tensors = json.loads((PUBLISHED / ALIASES[alias] / "manifest.json").read_text())["tensors"]
    used = sum(math.prod(t["shape"]) for t in tensors if checkpoint_key_to_param(t["key"]) is not None)
    assert doc["parameters"] == used and doc["checkpoint_parameters"] == registry()[alias].parameters
    assert doc["family"] == registry()[alias].family


def test_info_of_folder_reads_special_tokens():
    r = CliRunner().invoke(app, ["models", "info", str(checkpoint_dir("janus-pro-7b-tiny")), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert (doc["layers"], doc["hidden_size"], doc["heads"], doc["vocab_size"]) == (3, 96, 6, 1280)
    assert doc["special_tokens"]["pad"] == 1215 and doc["special_tokens"]["image"] == 1218
    plain = CliRunner().invoke(app, ["models", "info", str(checkpoint_dir("janus-pro-7b-tiny"))])
    assert "hidden size: 96" in plain.stdout


def test_info_unknown_is_one_line_error(tmp_path):
    r = janus("models", "info", "nobody/nothing", tmp=tmp_path)
    lines = r.stderr.strip().splitlines()
    assert (
        r.returncode != 0
        and len(lines) == 1
        and lines[0].startswith("error: ")
        and "nobody/nothing" in lines[0]
    )


def fake_hub_cache(tmp: Path, repo: str, files: dict[str, Path]) -> Path:
    """A Hugging Face cache holding REPO at one snapshot, laid out as huggingface-hub does."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = tmp / "hub" / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)
    for name, src in files.items():
        (snapshot / name).symlink_to(src)
    return snapshot


def test_pull_list_and_use_from_a_local_cache(tmp_path):
    tiny = checkpoint_dir("janus-pro-1b-tiny")
    snapshot = fake_hub_cache(tmp_path, "deepseek-ai/Janus-Pro-1B", {f.name: f for f in tiny.iterdir()})
    r = janus("models", "pull", "janus-pro-1b", tmp=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(snapshot)
    rows = {row["name"]: row for row in json.loads(janus("models", "list", "--json", tmp=tmp_path).stdout)}
    assert rows["janus-pro-1b"]["cached"] is True and rows["janus-pro-7b"]["cached"] is False
    info = json.loads(janus("models", "info", "janus-pro-1b", "--json", tmp=tmp_path).stdout)
    assert info["hidden_size"] == 64  # read from the cached (tiny) config, not the bundled one
