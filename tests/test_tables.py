"""Work listed in tables: Parquet / JSON-lines with an `image` column for describe, a `prompt`
column (with overrides) for the image commands. No model needed."""

from __future__ import annotations

import json

import pytest
from conftest import assert_one_line_error
from conftest import run_janus as run

from janus_cli.cli import inputs, jobs
from janus_cli.pipelines.text_to_image import GenerateSettings

pq = pytest.importorskip("pyarrow.parquet")
pa = pytest.importorskip("pyarrow")


def test_describe_reads_the_image_column_of_parquet_and_jsonl(tmp_path):
    pq.write_table(pa.table({"image": ["a.png", "b.png"], "caption_id": [1, 2]}), tmp_path / "items.parquet")
    (tmp_path / "items.jsonl").write_text('{"image": "c.png"}\n\n{"image": "d.png", "extra": 1}\n')
    names = inputs.expand_images([str(tmp_path / "items.parquet"), str(tmp_path / "items.jsonl")])
    assert names == ["a.png", "b.png", "c.png", "d.png"]


def test_a_table_without_image_paths_is_an_error_naming_the_row(tmp_path):
    (tmp_path / "items.jsonl").write_text('{"image": "a.png"}\n{"path": "b.png"}\n')
    assert_one_line_error(run("describe", str(tmp_path / "items.jsonl")), 'row 2 has no "image" path')


def test_generate_reads_prompts_and_overrides_from_parquet(tmp_path):
    table = pa.table({"prompt": ["a fox", "a hen"], "n": [1, 3], "seed": [None, 9], "cfg": [4.0, None]})
    pq.write_table(table, tmp_path / "prompts.parquet")
    lines = jobs.read_prompts(None, str(tmp_path / "prompts.parquet"))
    work = jobs.make_jobs(lines, GenerateSettings, {"n": 2, "seed": 5, "cfg": 5.0}, ("n", "seed", "cfg"))
    assert [(j.prompt, j.n, j.settings.seed, j.first, j.settings.cfg) for j in work] == [
        ("a fox", 1, 5, 0, 4.0),
        ("a hen", 3, 9, 1, 5.0),
    ]


def test_a_bad_parquet_prompts_row_is_named(tmp_path):
    pq.write_table(pa.table({"prompt": ["a fox"], "colour": ["red"]}), tmp_path / "p.parquet")
    assert_one_line_error(
        run("generate", "-f", str(tmp_path / "p.parquet")), "p.parquet: row 1: unknown key 'colour'"
    )
    (tmp_path / "q.parquet").write_text(json.dumps({"prompt": "not parquet"}))
    assert_one_line_error(run("generate", "-f", str(tmp_path / "q.parquet")), "not a Parquet file")
