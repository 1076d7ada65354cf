"""`--engine ray` on a local Ray cluster (2 CPUs) with the tiny checkpoints: the same texts,
records and PNG bytes as `--engine local`; a corrupt image recorded while the rest finish;
`--resume` after a killed run; a killed actor losing nothing (inputs: a folder, a prompts file,
a Parquet table and a JSON-lines table).

One cluster serves the module; the CLI joins it with --ray-address, as on a real cluster.
The local reference runs with one torch thread, as each Ray worker does (--cpus-per-worker 1):
fp32 CPU kernels split work by thread count, and a different split rounds differently."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import assert_one_line_error, checkpoint_dir, image_path, kill_after_first_item, wait_for_lines
from conftest import run_janus as run

from janus_cli.cli.manifest import Manifest
from janus_cli.pipelines.batching import ImageJob, image_batches
from janus_cli.pipelines.text_to_image import GenerateSettings

ray = pytest.importorskip("ray")

FAST = ("--max-tokens", "2", "--dtype", "float32", "-b", "1", "-q")
ONE_THREAD = {"OMP_NUM_THREADS": "1"}
IMAGES = ("square0.png", "grey0.png")  # each image costs seconds (full-size SigLIP): two show every case


def tiny() -> str:
    return str(checkpoint_dir("janus-pro-1b-tiny"))


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def by_file(records: list[dict]) -> dict[str, dict]:
    """Records keyed by image file name, without the folder (runs use different folders)."""
    return {Path(r["image"]).name: {k: v for k, v in r.items() if k != "image"} for r in records}


@pytest.fixture(scope="module")
def address():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for name in IMAGES:
        (folder / name).write_bytes(image_path(name).read_bytes())
    return folder


@pytest.fixture(scope="module")
def local_captions(photos) -> dict[str, dict]:
    r = run("describe", str(photos), "-m", tiny(), "--jsonl", *FAST, env=ONE_THREAD)
    assert r.returncode == 0, r.stderr
    return by_file(json_lines(r.stdout))


def describe_on_ray(address: str, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "janus_cli",
        "describe",
        *args,
        "-m",
        tiny(),
        "--engine",
        "ray",
        "--ray-address",
        address,
        *FAST,
    ]


# ---- no cluster needed -----------------------------------------------------------------


def test_work_units_are_the_local_forward_batches():
    fox, owl, hen = (
        ImageJob(p, GenerateSettings(n=n, seed=s, cfg=c), first)
        for p, n, s, c, first in [
            ("a fox", 3, 10, 5.0, 0),
            ("an owl", 2, 20, 5.0, 3),
            ("a hen", 2, 30, 3.0, 5),
        ]
    )
    cut = [[(job.prompt, k) for job, k in batch] for batch in image_batches([fox, owl, hen], 2)]
    # prompts share a forward; a change of sampling settings starts a new one
    assert cut == [
        [("a fox", 0), ("a fox", 1)],
        [("a fox", 2), ("an owl", 0)],
        [("an owl", 1)],
        [("a hen", 0), ("a hen", 1)],
    ]


def test_without_ray_one_line_says_how_to_install_it(tmp_path):
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "__init__.py").write_text("raise ImportError('no ray here')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    r = run("describe", str(image_path("square0.png")), "--engine", "ray", env=env)
    assert_one_line_error(r, "--engine ray needs Ray: pip install 'janus-cli[ray]'")
    r = run("generate", "a cat", "--engine", "ray", env=env)
    assert_one_line_error(r, "pip install 'janus-cli[ray]'")


# ---- on the cluster --------------------------------------------------------------------


def test_describe_matches_local_and_records_a_corrupt_image(address, photos, local_captions, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in photos.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "broken.png").write_bytes(image_path("square0.png").read_bytes()[:1000])  # a PNG cut short
    manifest = tmp_path / "captions.jsonl"
    args = (
        str(folder),
        "--workers",
        "2",
        "--keep-going",
        "--jsonl",
        "--manifest",
        str(manifest),
        "--format",
        "parquet",
    )
    r = subprocess.run(describe_on_ray(address, *args), capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, r.stderr
    records = by_file(json_lines(r.stdout))
    assert by_file(Manifest(manifest).records()) == records
    import pyarrow.parquet as pq

    table = by_file(
        pq.read_table(tmp_path / "captions.parquet").to_pylist()
    )  # every key a column, absent = null
    assert table == {name: {k: record.get(k) for k in table[name]} for name, record in records.items()}
    assert "broken.png" in records.pop("broken.png")["error"]
    assert records == local_captions
    assert [line for line in r.stderr.splitlines() if line.startswith("error: ")][
        -1
    ] == "error: 1 of 3 images failed"


def test_generate_from_a_prompts_file_gives_the_local_png_bytes(address, tmp_path):
    # -b 2: the fox and the owl share a forward (prompts of different lengths), the hen runs alone
    (tmp_path / "prompts.jsonl").write_text(
        'a red fox\nan owl on a branch at night\n{"prompt": "a hen", "seed": 9, "cfg": 3}\n'
    )
    common = [
        "-f",
        str(tmp_path / "prompts.jsonl"),
        "-m",
        tiny(),
        "--seed",
        "5",
        "--dtype",
        "float32",
        "-b",
        "2",
        "--jsonl",
        "-q",
    ]
    local = run("generate", *common, "-o", str(tmp_path / "local"), env=ONE_THREAD)
    assert local.returncode == 0, local.stderr
    manifest = tmp_path / "images.jsonl"
    remote = run(
        "generate",
        *common,
        "-o",
        str(tmp_path / "ray"),
        "--engine",
        "ray",
        "--ray-address",
        address,
        "--workers",
        "2",
        "--manifest",
        str(manifest),
    )
    assert remote.returncode == 0, remote.stderr
    mine = sorted(json_lines(remote.stdout), key=lambda r: r["index"])
    assert sorted(Manifest(manifest).records(), key=lambda r: r["index"]) == mine
    theirs = json_lines(local.stdout)
    assert [{**r, "path": Path(r["path"]).name} for r in mine] == [
        {**r, "path": Path(r["path"]).name} for r in theirs
    ]
    for a, b in zip(mine, theirs, strict=True):
        assert Path(a["path"]).read_bytes() == Path(b["path"]).read_bytes()


def test_resume_after_a_killed_run_redoes_nothing_and_loses_nothing(
    address, photos, local_captions, tmp_path
):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = tmp_path / "photos.parquet"  # the images listed in a table, as large jobs keep them
    pq.write_table(pa.table({"image": [str(photos / name) for name in IMAGES]}), table)
    manifest = tmp_path / "captions.jsonl"
    kill_after_first_item(describe_on_ray(address, str(table), "--manifest", str(manifest)), manifest)
    before = Manifest(manifest).records()
    assert 1 <= len(before) < len(IMAGES)
    r = subprocess.run(
        [*describe_on_ray(address, str(table), "--manifest", str(manifest), "--resume", "--jsonl")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    redone = {Path(d["image"]).name for d in json_lines(r.stdout)}
    assert redone.isdisjoint(by_file(before))
    after = Manifest(manifest).records()
    assert len(after) == len(IMAGES) and by_file(after) == local_captions


def test_a_killed_actor_loses_no_item(address, photos, local_captions, tmp_path):
    table = tmp_path / "photos.jsonl"
    table.write_text("".join(json.dumps({"image": str(photos / name)}) + "\n" for name in IMAGES))
    manifest = tmp_path / "captions.jsonl"
    proc = subprocess.Popen(
        describe_on_ray(address, str(table), "--manifest", str(manifest)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_lines(manifest, 1, proc)
        [pid] = [
            a["Pid"]
            for a in ray._private.state.actors().values()
            if "MapWorker" in a["ActorClassName"] and a["State"] == "ALIVE"
        ]
        os.kill(pid, signal.SIGKILL)  # mid-way through the second image's batch
        out, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert any(
        a["NumRestarts"] >= 1
        for a in ray._private.state.actors().values()
        if "MapWorker" in a["ActorClassName"]
    )
    records = Manifest(manifest).records()
    assert len(records) == len(IMAGES) and by_file(records) == local_captions


def test_flow_generate_with_the_official_noise_gives_the_local_png_bytes(address, tmp_path):
    # --noise official draws all of a prompt's latents from one seed: the job runs as one unit
    flow = "janusflow-1.3b-tiny"
    common = [
        "a hen",
        "-n",
        "2",
        "--noise",
        "official",
        "--steps",
        "1",
        "--seed",
        "4",
        "-m",
        str(checkpoint_dir(flow)),
        "--vae",
        str(checkpoint_dir(f"{flow}-vae")),
        "--dtype",
        "float32",
        "--jsonl",
        "-q",
    ]
    local = run("flow-generate", *common, "-o", str(tmp_path / "local"), env=ONE_THREAD)
    assert local.returncode == 0, local.stderr
    remote = run(
        "flow-generate", *common, "-o", str(tmp_path / "ray"), "--engine", "ray", "--ray-address", address
    )
    assert remote.returncode == 0, remote.stderr
    mine, theirs = json_lines(remote.stdout), json_lines(local.stdout)
    assert [{**r, "path": Path(r["path"]).name} for r in mine] == [
        {**r, "path": Path(r["path"]).name} for r in theirs
    ]
    assert all(
        Path(a["path"]).read_bytes() == Path(b["path"]).read_bytes()
        for a, b in zip(mine, theirs, strict=True)
    )
