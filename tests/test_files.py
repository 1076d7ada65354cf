"""Output files as users expect them: umask permissions, names claimed at write time, early
refusal of outputs that cannot be written, nothing partial left behind."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import numpy as np
import pytest
from conftest import assert_one_line_error, checkpoint_dir
from conftest import run_janus as run

from janus_cli.errors import OutputError
from janus_cli.files import PathTaken, write_new
from janus_cli.imageio import save_png


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_files_get_the_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        png = save_png(np.zeros((4, 4, 3), np.uint8), tmp_path / "a.png", {})
        other = write_new(tmp_path / "b.json", lambda f: f.write(b"{}"))
    finally:
        os.umask(old)
    assert mode(png) == mode(other) == 0o644
    assert sorted(os.listdir(tmp_path)) == ["a.png", "b.json"]  # no temporary file left


def test_a_taken_name_is_never_replaced_and_no_temporary_file_stays(tmp_path):
    target = tmp_path / "a.png"
    target.write_bytes(b"mine")
    with pytest.raises(PathTaken):
        write_new(target, lambda f: f.write(b"theirs"))
    assert target.read_bytes() == b"mine" and os.listdir(tmp_path) == ["a.png"]


def test_a_failed_write_leaves_no_partial_file(tmp_path):
    def fail(f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError, match="a.png: cannot write \\(No space left on device\\)"):
        write_new(tmp_path / "a.png", fail)
    assert os.listdir(tmp_path) == []


def test_the_generate_run_writes_0644_files(tmp_path):
    tiny = str(checkpoint_dir("janus-pro-1b-tiny"))
    r = subprocess.run(
        [
            "sh",
            "-c",
            f'umask 022 && exec "{sys.executable}" -m janus_cli generate "a fox" -m {tiny} --dtype '
            f"float32 -q "
            f"-o {tmp_path} --sidecar --manifest {tmp_path}/made.jsonl",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    made = sorted(tmp_path.iterdir())
    assert len(made) == 3 and all(mode(p) == 0o644 for p in made), [(p.name, oct(mode(p))) for p in made]


@pytest.mark.slow
def test_two_runs_into_one_folder_both_succeed_with_their_own_names(tmp_path):
    tiny = str(checkpoint_dir("janus-pro-1b-tiny"))
    command = [
        sys.executable,
        "-m",
        "janus_cli",
        "generate",
        "a red fox",
        "-m",
        tiny,
        "-n",
        "2",
        "--seed",
        "1",
        "--dtype",
        "float32",
        "-q",
        "-o",
        str(tmp_path),
    ]
    runs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in runs]
    assert [p.returncode for p in runs] == [0, 0], [e for _, e in outs]
    paths = [line for out, _ in outs for line in out.splitlines()]
    assert (
        len(paths) == 4
        and len(set(paths)) == 4
        and sorted(paths) == sorted(str(p) for p in tmp_path.iterdir())
    )


def test_an_output_that_cannot_be_written_fails_before_loading(tmp_path):
    (tmp_path / "file").write_text("")
    # the model does not exist: had it been loaded first, the error would name it
    r = run("generate", "a fox", "-m", str(tmp_path / "no-model"), "-o", str(tmp_path / "file" / "out"))
    assert_one_line_error(r, "is a file, not a folder")
    assert r.returncode == OutputError.exit_code
    r = run("generate", "a fox", "-m", str(tmp_path / "no-model"), "-o", str(tmp_path / "file" / "{i}.png"))
    assert_one_line_error(r, "is a file, not a folder")
    r = run(
        "generate",
        "a fox",
        "-m",
        str(tmp_path / "no-model"),
        "--manifest",
        str(tmp_path / "file" / "m.jsonl"),
        "-o",
        str(tmp_path),
    )
    assert_one_line_error(r, "is a file, not a folder")
    if os.geteuid() != 0:  # root writes into read-only folders
        (tmp_path / "ro").mkdir(mode=0o555)
        assert_one_line_error(
            run("generate", "a fox", "-m", str(tmp_path / "no-model"), "-o", str(tmp_path / "ro")),
            "not writable",
        )
