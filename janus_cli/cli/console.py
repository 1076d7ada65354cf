"""What the commands show on stderr: one-line errors, progress, the loading spinner, timings.

stdout is data; everything here goes to stderr.
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Iterator

import typer
from rich.console import Console

DEBUG = False
err = Console(stderr=True, highlight=False, soft_wrap=True)


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
        raise fail(
            f"unexpected {type(e).__name__}: {first} (rerun with --debug for the traceback)", 70
        ) from None


def show_progress(quiet: bool) -> bool:
    return not quiet and err.is_terminal


# What a command loads besides the LLM (the models' PARTS): describe never reads the image
# decoders, the image commands never read the vision encoder; chat loads both.
UNDERSTANDING, GENERATION = ("understanding",), ("generation",)


def open_model(
    ref: str,
    device: str,
    dtype: str,
    revision: str | None,
    quiet: bool,
    quantize: str = "none",
    compile: bool = False,
    parts: tuple[str, ...] | None = None,
    vae: str | None = None,
    adapter: str | None = None,
):
    """`janus_cli.load` with a spinner and a "loaded ..." line on stderr."""
    import time

    import janus_cli

    t0 = time.perf_counter()
    shown = show_progress(quiet)
    with err.status(f"loading {ref}", spinner="dots") if shown else contextlib.nullcontext():
        model = janus_cli.load(
            ref,
            device,
            dtype,
            quantize,
            revision,
            vae,
            compile=compile,
            parts=parts,
            progress=shown,
            adapter=adapter,
        )
    if shown:
        s = model.session
        name = str(s.dtype).removeprefix("torch.") + (f", {s.quantize}" if s.quantize != "none" else "")
        lora = f" + adapter {s.adapter.name}" if s.adapter is not None else ""
        took = time.perf_counter() - t0
        err.print(
            f"loaded {ref}{lora} ({name}, {s.device.type}{kernel_note(s)}) in {took:.1f}s",
            markup=False,
        )
    return model


def kernel_note(session) -> str:
    """Which matmul kernels a bf16 CPU session decodes with, and why not ours (kernels/build.py);
    for int4 weights, which kernel multiplies them."""
    import torch

    from janus_cli.kernels.build import load_rows
    from janus_cli.kernels.int4 import int4_kernel_note

    ours = session.device.type == "cpu" and session.dtype == torch.bfloat16 and not session.compile
    int4 = session.quantize == "int4"
    if not ours:
        dtype = str(session.dtype).removeprefix("torch.")
        return f", int4 dequantized to {dtype} per call" if int4 else ""
    lib, note = load_rows()
    rows = f", {note}" if lib else f", PyTorch kernels: {note}"
    return rows + (f", {int4_kernel_note()}" if int4 else "")


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
