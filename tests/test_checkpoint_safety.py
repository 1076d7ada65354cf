"""Broken and hostile checkpoints fail with one line naming the file, and run no code.

Each case is a copy of the tiny fixture checkpoint in which the small files are real copies
(safe to edit) and the big weight files are hard links (never written to: a truncated weight
file is written as a new file).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import checkpoint_dir, image_path

from janus_cli.checkpoints.load import load_model
from janus_cli.checkpoints.read import read_state_dict
from janus_cli.errors import CheckpointError
from janus_cli.pipelines.session import open_session

PAD = "<｜▁pad▁｜>"
SMALL = 1 << 20  # files below this size are copied, larger ones hard-linked


def clone(name: str, dst: Path, skip: tuple[str, ...] = ()) -> Path:
    """DST as a cheap copy of fixture checkpoint NAME (small files copied, weights linked)."""
    src = checkpoint_dir(name)
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.name in skip:
            continue
        if f.stat().st_size < SMALL:
            shutil.copy2(f, dst / f.name)
        else:
            try:
                os.link(f, dst / f.name)
            except OSError:
                (dst / f.name).symlink_to(f)
    return dst


def truncated(src: Path, dst: Path, keep: float = 0.5) -> None:
    """Write the first KEEP fraction of SRC to DST (a new file, never the linked original)."""
    n = int(src.stat().st_size * keep)
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        while n > 0:
            chunk = fi.read(min(n, 1 << 24))
            fo.write(chunk)
            n -= len(chunk)


class _Payload:
    """Unpickling this runs a shell command: the attack a `.bin` file can carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# --- each builder returns (checkpoint folder, the file the error must name) ------------------


def _pickle_payload_zip(tmp: Path) -> tuple[Path, Path]:
    d = clone("janus-pro-1b-tiny", tmp / "ckpt", skip=("pytorch_model.bin",))
    torch.save({"x": torch.zeros(2), "evil": _Payload(tmp / "pwned")}, d / "pytorch_model.bin")
    return d, d / "pytorch_model.bin"


def _pickle_payload_raw(tmp: Path) -> tuple[Path, Path]:
    d = clone("janus-pro-1b-tiny", tmp / "ckpt", skip=("pytorch_model.bin",))
    (d / "pytorch_model.bin").write_bytes(pickle.dumps({"evil": _Payload(tmp / "pwned")}))
    return d, d / "pytorch_model.bin"


def _truncated_safetensors(tmp: Path) -> tuple[Path, Path]:
    d = clone("janus-1.3b-tiny", tmp / "ckpt", skip=("model.safetensors",))
    truncated(checkpoint_dir("janus-1.3b-tiny") / "model.safetensors", d / "model.safetensors")
    return d, d / "model.safetensors"


def _truncated_bin(tmp: Path) -> tuple[Path, Path]:
    d = clone("janus-pro-1b-tiny", tmp / "ckpt", skip=("pytorch_model.bin",))
    truncated(checkpoint_dir("janus-pro-1b-tiny") / "pytorch_model.bin", d / "pytorch_model.bin")
    return d, d / "pytorch_model.bin"


def _corrupt_index(tmp: Path) -> tuple[Path, Path]:
    d = clone("janus-pro-7b-tiny", tmp / "ckpt")
    index = d / "pytorch_model.bin.index.json"
    index.write_text(index.read_text()[:500])  # cut mid-document: not JSON any more
    return d, index


def _index_names_missing_shard(tmp: Path) -> tuple[Path, Path]:
    d = clone("janus-pro-7b-tiny", tmp / "ckpt", skip=("pytorch_model-00002-of-00002.bin",))
    return d, d / "pytorch_model.bin.index.json"


def _config_contradicts_tensors(tmp: Path) -> tuple[Path, Path]:
    d = clone("janus-pro-1b-tiny", tmp / "ckpt")
    cfg = json.loads((d / "config.json").read_text())
    cfg["language_config"]["hidden_size"] = 128  # the tensors say 64
    (d / "config.json").write_text(json.dumps(cfg))
    return d, d  # load_strict names the checkpoint folder it compared against its config


def _tokenizer_without_pad(tmp: Path) -> tuple[Path, Path]:
    d = clone("janus-pro-1b-tiny", tmp / "ckpt")
    tok = json.loads((d / "tokenizer.json").read_text())
    tok["added_tokens"] = [t for t in tok["added_tokens"] if t["content"] != PAD]
    (d / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))
    return d, d / "tokenizer.json"


CASES: dict[str, Callable[[Path], tuple[Path, Path]]] = {
    "pickle-payload-zip": _pickle_payload_zip,
    "pickle-payload-raw": _pickle_payload_raw,
    "truncated-safetensors": _truncated_safetensors,
    "truncated-bin": _truncated_bin,
    "corrupt-index": _corrupt_index,
    "index-missing-shard": _index_names_missing_shard,
    "config-contradicts-tensors": _config_contradicts_tensors,
    "tokenizer-without-pad": _tokenizer_without_pad,
}
WEIGHT_CASES = [c for c in CASES if c not in ("config-contradicts-tensors", "tokenizer-without-pad")]


def _one_line(message: str, names: Path) -> None:
    assert "\n" not in message, message
    assert str(names) in message, f"{names} not named in: {message}"


@pytest.mark.parametrize("case", WEIGHT_CASES)
def test_reading_broken_weights_is_a_one_line_checkpoint_error(case, tmp_path):
    folder, culprit = CASES[case](tmp_path)
    with pytest.raises(CheckpointError) as e:
        read_state_dict(folder)
    _one_line(str(e.value), culprit)
    assert not (tmp_path / "pwned").exists(), "the pickle payload ran"


def test_payload_error_says_nothing_ran(tmp_path):
    folder, _ = _pickle_payload_zip(tmp_path)
    with pytest.raises(CheckpointError, match="refused") as e:
        read_state_dict(folder)
    assert "nothing was executed" in str(e.value)
    assert not (tmp_path / "pwned").exists()


def test_config_contradicting_tensors_is_refused(tmp_path):
    folder, culprit = _config_contradicts_tensors(tmp_path)
    with pytest.raises(CheckpointError, match="does not match its config") as e:
        load_model(folder, dtype=torch.float32)
    _one_line(str(e.value), culprit)
    assert "shape mismatch" in str(e.value) and "(config says (128," in str(e.value)


def test_tokenizer_missing_pad_is_refused(tmp_path):
    folder, culprit = _tokenizer_without_pad(tmp_path)
    with pytest.raises(CheckpointError, match="lacks the special token") as e:
        open_session("bad", folder, torch.device("cpu"), torch.float32)
    _one_line(str(e.value), culprit)
    assert PAD in str(e.value)


@pytest.mark.parametrize("case", list(CASES))
def test_cli_reports_one_line_error(case, tmp_path):
    folder, culprit = CASES[case](tmp_path)
    env = {**os.environ, "COLUMNS": "400", "JANUS_DEBUG": "0"}
    cmd = [
        sys.executable,
        "-m",
        "janus_cli",
        "describe",
        str(image_path("portrait0.png")),
        "-m",
        str(folder),
        "--dtype",
        "float32",
        "--max-tokens",
        "2",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode != 0
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    assert str(culprit) in lines[0], lines[0]
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "pwned").exists(), "the pickle payload ran"
