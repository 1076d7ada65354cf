"""What every command shares: options, error handling, model loading, progress."""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Iterator
from enum import Enum
from typing import Annotated

import typer
from rich.console import Console

DEBUG = False
err = Console(stderr=True, highlight=False, soft_wrap=True)

RUNTIME = "Runtime"
SAMPLING = "Sampling"
OUTPUT = "Output"
SCALE = "Scaling out"

Model = Annotated[str, typer.Option("--model", "-m", envvar="JANUS_MODEL", rich_help_panel=RUNTIME,
    help="Checkpoint: a folder, a hub repo id, or an alias (janus-pro-1b, janus-pro-7b, janus-1.3b, janusflow-1.3b).")]  # fmt: skip
Device = Annotated[str, typer.Option("--device", envvar="JANUS_DEVICE", rich_help_panel=RUNTIME,
    help="auto, cpu, cuda or mps.")]  # fmt: skip
Dtype = Annotated[str, typer.Option("--dtype", envvar="JANUS_DTYPE", rich_help_panel=RUNTIME,
    help="auto (bf16 on CUDA and on CPUs with native bf16, else fp32), bfloat16 or float32. float16 is refused.")]  # fmt: skip
Quantize = Annotated[str, typer.Option("--quantize", envvar="JANUS_QUANTIZE", rich_help_panel=RUNTIME,
    help="none, or int8: weight-only int8 LLM and image-head linears (half the weight bytes of bf16; quality cost in the README).")]  # fmt: skip
Compile = Annotated[bool, typer.Option("--compile", envvar="JANUS_COMPILE", rich_help_panel=RUNTIME,
    help="Run the image-token step under torch.compile, as a CUDA graph on CUDA (a minute or more to compile, once per batch size; on CPU needs a C++ compiler).")]  # fmt: skip
Revision = Annotated[str | None, typer.Option("--revision", rich_help_panel=RUNTIME, help="Hub revision (branch, tag or commit).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", rich_help_panel=OUTPUT, help="No progress or timing on stderr.")]
Json = Annotated[bool, typer.Option("--json", rich_help_panel=OUTPUT, help="Print JSON on stdout instead of plain text.")]
Jsonl = Annotated[bool, typer.Option("--jsonl", rich_help_panel=OUTPUT,
    help="One JSON object per item on stdout, a line each as it finishes (same fields as --json).")]  # fmt: skip
Shard = Annotated[str | None, typer.Option("--shard", rich_help_panel=RUNTIME, show_default=False,
    help="K/N: do only the K-th of N equal contiguous parts of the work (1 <= K <= N). Default: from SLURM_ARRAY_TASK_ID/COUNT when set.")]  # fmt: skip
Manifest = Annotated[str | None, typer.Option("--manifest", rich_help_panel=OUTPUT, show_default=False,
    help="Append each finished item to this JSONL file as it finishes.")]  # fmt: skip
Resume = Annotated[bool, typer.Option("--resume", rich_help_panel=OUTPUT, help="Skip the items the --manifest records as done.")]
KeepGoing = Annotated[bool, typer.Option("--keep-going", "-k", rich_help_panel=RUNTIME,
    help="Record a failing item as an error and go on; exit non-zero at the end.")]  # fmt: skip
Sidecar = Annotated[bool, typer.Option("--sidecar", rich_help_panel=OUTPUT, help="Also write NAME.json beside each NAME.png with its full recipe.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", rich_help_panel=OUTPUT, help="Replace existing files.")]
Output = Annotated[str, typer.Option("--output", "-o", rich_help_panel=OUTPUT, help="Folder, or name template with {i} {seed} {slug} {model} {date}.")]
BatchSize = Annotated[str, typer.Option("--batch-size", "-b", rich_help_panel=RUNTIME,
    help="Images per forward pass: a number, or auto (what half the free memory holds for their KV cache; at most 16 on CPU, 64 on CUDA; 4 on Ray).")]  # fmt: skip
PromptsFile = Annotated[str | None, typer.Option("--prompts-file", "-f", show_default=False,
    help='Prompts, one per line; a line may be a JSON object {"prompt": ..., "n": ..., "seed": ..., "cfg": ...} overriding options for it. Or a .parquet table with those columns.')]  # fmt: skip


class EngineName(str, Enum):
    local = "local"
    ray = "ray"


Engine = Annotated[EngineName, typer.Option("--engine", rich_help_panel=SCALE,
    help="local: this process. ray: a Ray Data job, one model per worker, same results (needs janus-cli\\[ray]).")]  # fmt: skip
RayAddress = Annotated[str | None, typer.Option("--ray-address", rich_help_panel=SCALE, show_default=False,
    help="Ray cluster to join (host:port or ray://...). Default: RAY_ADDRESS if set, else a local cluster started for this run.")]  # fmt: skip
Workers = Annotated[int, typer.Option("--workers", min=1, rich_help_panel=SCALE, help="Ray actors, each with its own copy of the model.")]
GpusPerWorker = Annotated[float, typer.Option("--gpus-per-worker", min=0.0, rich_help_panel=SCALE,
    help="GPUs each worker reserves (fractions share a GPU); 0 runs the workers on CPU.")]  # fmt: skip
CpusPerWorker = Annotated[int, typer.Option("--cpus-per-worker", min=1, rich_help_panel=SCALE,
    help="CPUs each worker reserves, and its torch threads (results can differ in the last bit with other thread counts).")]  # fmt: skip


class ManifestFormat(str, Enum):
    jsonl = "jsonl"
    parquet = "parquet"


Format = Annotated[ManifestFormat, typer.Option("--format", rich_help_panel=OUTPUT,
    help="parquet: when the run ends, also write all the --manifest's records as one Parquet table beside it (same name, .parquet); the JSONL manifest stays the journal that --resume reads.")]  # fmt: skip


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"error: {message}", markup=False, soft_wrap=True)
    return typer.Exit(code)


@contextlib.contextmanager
def handle_errors() -> Iterator[None]:
    """Turn user errors into one `error: ...` line and a non-zero exit (tracebacks with --debug)."""
    from janus_cli.errors import JanusError

    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except JanusError as e:
        if DEBUG:
            traceback.print_exc()
        raise fail(str(e), e.exit_code) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None
    except MemoryError:
        raise fail("out of memory: lower --batch-size or -n, or use --dtype bfloat16", 5) from None
    except Exception as e:
        if DEBUG:
            traceback.print_exc()
            raise typer.Exit(70) from None
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise fail(f"unexpected {type(e).__name__}: {first} (rerun with --debug for the traceback)", 70) from None


def show_progress(quiet: bool) -> bool:
    return not quiet and err.is_terminal


# What a command loads besides the LLM (the models' PARTS): describe never reads the image
# decoders, the image commands never read the vision encoder; chat loads both.
UNDERSTANDING, GENERATION = ("understanding",), ("generation",)


def open_model(ref: str, device: str, dtype: str, revision: str | None, quiet: bool, quantize: str = "none",
               compile: bool = False, parts: tuple[str, ...] | None = None):  # fmt: skip
    """Resolve, download if needed, and load the checkpoint REF for the kinds of work PARTS (all
    when None; see checkpoints/load.py), with status on stderr."""
    import time

    from janus_cli.checkpoints.hub import resolve
    from janus_cli.pipelines.session import open_session
    from janus_cli.runtime import choose_device, choose_dtype, choose_quantize

    dev = choose_device(device)
    dt = choose_dtype(dtype, dev)
    quantize = choose_quantize(quantize)
    folder = resolve(ref, revision, progress=show_progress(quiet))
    t0 = time.perf_counter()
    with err.status(f"loading {ref}", spinner="dots") if show_progress(quiet) else contextlib.nullcontext():
        session = open_session(ref, folder, dev, dt, quantize, compile, parts)
    if show_progress(quiet):
        name = str(dt).removeprefix("torch.") + (f", {quantize}" if quantize != "none" else "")
        err.print(f"loaded {ref} ({name}, {dev.type}{kernel_note(session)}) in {time.perf_counter() - t0:.1f}s", markup=False)
    return session


def kernel_note(session) -> str:
    """Which matmul kernels a bf16 CPU session decodes with, and why not ours (kernels/build.py)."""
    import torch

    from janus_cli.kernels.build import load_rows

    if session.device.type != "cpu" or session.dtype != torch.bfloat16 or session.compile:
        return ""
    lib, note = load_rows()
    return f", {note}" if lib else f", PyTorch kernels: {note}"


def batch_size(value: str) -> int | None:
    """--batch-size: a positive number, or None for auto."""
    if value == "auto":
        return None
    if not value.isdigit() or int(value) < 1:
        raise fail(f"--batch-size {value}: give a positive number or auto")
    return int(value)


def peak_memory() -> str:
    """The run's peak memory, for the timing summary: the CUDA allocator's peak when a GPU
    ran, else the process's peak resident set."""
    torch = sys.modules.get("torch")  # never imported here: a run that made images has it
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        return f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
    try:
        import resource
    except ImportError:  # Windows
        return "peak memory unknown"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 2**30 if sys.platform == "darwin" else 2**20  # bytes on macOS, KiB on Linux
    return f"peak memory {peak / scale:.2f} GiB"


def read_lines(arg: str) -> list[str]:
    """ARG, or one item per non-empty line of stdin when ARG is `-`."""
    if arg != "-":
        return [arg]
    if sys.stdin.isatty():
        raise fail("`-` reads from stdin, but stdin is a terminal")
    return [line.strip() for line in sys.stdin.read().splitlines() if line.strip()]
