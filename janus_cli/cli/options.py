"""The options the commands share, as Typer annotations (one definition each)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

RUNTIME = "Runtime"
SAMPLING = "Sampling"
OUTPUT = "Output"
SCALE = "Scaling out"

Model = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        envvar="JANUS_MODEL",
        rich_help_panel=RUNTIME,
        help="Checkpoint: a folder, a hub repo id, or an alias (janus-pro-1b, janus-pro-7b, "
        "janus-1.3b, janusflow-1.3b).",
    ),
]
Device = Annotated[
    str,
    typer.Option("--device", envvar="JANUS_DEVICE", rich_help_panel=RUNTIME, help="auto, cpu, cuda or mps."),
]
Dtype = Annotated[
    str,
    typer.Option(
        "--dtype",
        envvar="JANUS_DTYPE",
        rich_help_panel=RUNTIME,
        help="auto (bf16 on CUDA and on CPUs with native bf16, else fp32), bfloat16 or float32. "
        "float16 is refused.",
    ),
]
Quantize = Annotated[
    str,
    typer.Option(
        "--quantize",
        envvar="JANUS_QUANTIZE",
        rich_help_panel=RUNTIME,
        help="none; int8: weight-only int8 LLM and image-head linears (half the weight bytes "
        "of bf16); int4: 4-bit LLM linears in groups of 64, int8 image head (about 30 %). "
        "Quality cost in the README.",
    ),
]
Compile = Annotated[
    bool,
    typer.Option(
        "--compile",
        envvar="JANUS_COMPILE",
        rich_help_panel=RUNTIME,
        help="Run the image-token step under torch.compile, as a CUDA graph on CUDA (a minute or "
        "more to compile, once per batch size; on CPU needs a C++ compiler).",
    ),
]
Revision = Annotated[
    str | None,
    typer.Option("--revision", rich_help_panel=RUNTIME, help="Hub revision (branch, tag or commit)."),
]
Quiet = Annotated[
    bool, typer.Option("--quiet", "-q", rich_help_panel=OUTPUT, help="No progress or timing on stderr.")
]
Json = Annotated[
    bool, typer.Option("--json", rich_help_panel=OUTPUT, help="Print JSON on stdout instead of plain text.")
]
Jsonl = Annotated[
    bool,
    typer.Option(
        "--jsonl",
        rich_help_panel=OUTPUT,
        help="One JSON object per item on stdout, a line each as it finishes (same fields as --json).",
    ),
]
Shard = Annotated[
    str | None,
    typer.Option(
        "--shard",
        rich_help_panel=RUNTIME,
        show_default=False,
        help="K/N: do only the K-th of N equal contiguous parts of the work (1 <= K <= N). "
        "Default: from SLURM_ARRAY_TASK_ID/COUNT when set.",
    ),
]
Manifest = Annotated[
    str | None,
    typer.Option(
        "--manifest",
        rich_help_panel=OUTPUT,
        show_default=False,
        help="Append each finished item to this JSONL file as it finishes.",
    ),
]
Resume = Annotated[
    bool,
    typer.Option("--resume", rich_help_panel=OUTPUT, help="Skip the items the --manifest records as done."),
]
KeepGoing = Annotated[
    bool,
    typer.Option(
        "--keep-going",
        "-k",
        rich_help_panel=RUNTIME,
        help="Record a failing item as an error and go on; exit non-zero at the end.",
    ),
]
Sidecar = Annotated[
    bool,
    typer.Option(
        "--sidecar",
        rich_help_panel=OUTPUT,
        help="Also write NAME.json beside each NAME.png with its full recipe.",
    ),
]
Overwrite = Annotated[
    bool, typer.Option("--overwrite", rich_help_panel=OUTPUT, help="Replace existing files.")
]
Output = Annotated[
    str,
    typer.Option(
        "--output",
        "-o",
        rich_help_panel=OUTPUT,
        help="Folder, or name template with {i} {seed} {slug} {model} {date}.",
    ),
]
BatchSize = Annotated[
    str,
    typer.Option(
        "--batch-size",
        "-b",
        rich_help_panel=RUNTIME,
        help="Images per forward pass: a number, or auto (what half the free memory holds for "
        "their KV cache; at most 16 on CPU, 64 on CUDA; 4 on Ray).",
    ),
]
PromptsFile = Annotated[
    str | None,
    typer.Option(
        "--prompts-file",
        "-f",
        show_default=False,
        help='Prompts, one per line; a line may be a JSON object {"prompt": ..., "n": ..., '
        '"seed": ..., "cfg": ...} overriding options for it. Or a .parquet table with those columns.',
    ),
]


class EngineName(str, Enum):
    local = "local"
    ray = "ray"


Engine = Annotated[
    EngineName,
    typer.Option(
        "--engine",
        rich_help_panel=SCALE,
        help="local: this process. ray: a Ray Data job, one model per worker, same results (needs "
        "janus-cli\\[ray]).",
    ),
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        rich_help_panel=SCALE,
        show_default=False,
        help="Ray cluster to join (host:port or ray://...). Default: RAY_ADDRESS if set, else a "
        "local cluster started for this run.",
    ),
]
Workers = Annotated[
    int,
    typer.Option(
        "--workers", min=1, rich_help_panel=SCALE, help="Ray actors, each with its own copy of the model."
    ),
]
GpusPerWorker = Annotated[
    float,
    typer.Option(
        "--gpus-per-worker",
        min=0.0,
        rich_help_panel=SCALE,
        help="GPUs each worker reserves (fractions share a GPU); 0 runs the workers on CPU.",
    ),
]
CpusPerWorker = Annotated[
    int,
    typer.Option(
        "--cpus-per-worker",
        min=1,
        rich_help_panel=SCALE,
        help="CPUs each worker reserves, and its torch threads (results can differ in the last "
        "bit with other thread counts).",
    ),
]


class ManifestFormat(str, Enum):
    jsonl = "jsonl"
    parquet = "parquet"


Format = Annotated[
    ManifestFormat,
    typer.Option(
        "--format",
        rich_help_panel=OUTPUT,
        help="parquet: when the run ends, also write all the --manifest's records as one Parquet "
        "table beside it (same name, .parquet); the JSONL manifest stays the journal that --resume reads.",
    ),
]
Adapter = Annotated[
    str | None,
    typer.Option(
        "--adapter",
        rich_help_panel=RUNTIME,
        show_default=False,
        help="A LoRA adapter folder (PEFT format, from janus finetune) merged into the model at load.",
    ),
]
