"""Joining a Ray cluster and streaming a list of batches through model-holding actors."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from janus_cli.distributed import preflight, stderr_filter
from janus_cli.errors import ConnectionFailed, InputError, JanusError

# Decoding an image is cheap next to a model step; a zero CPU claim lets the decode tasks run
# beside actors that hold every CPU of a small cluster instead of waiting for one to free up.
DECODE_CPUS = 0

# Ray Data always hands its actors their code through the object store and lets them restart,
# and Ray's C++ core warns about that pair (ray-project/ray#53727) once per actor, at error
# level: nothing a user can act on, so -q leaves it out of stderr.
NOTICES = (b"has constructor arguments in the object store",)


@dataclass(frozen=True)
class RayOptions:
    address: str | None  # None: RAY_ADDRESS if set, else a local cluster for this run
    workers: int  # actors, each loads the model once
    gpus_per_worker: float
    cpus_per_worker: int  # also the actor's torch threads
    quiet: bool


@dataclass(frozen=True)
class ModelRef:
    """What an actor needs to open the same checkpoint as the local engine would."""

    model: str
    device: str
    dtype: str
    revision: str | None
    quantize: str = "none"
    compile: bool = False
    parts: tuple[str, ...] | None = None  # the kinds of work to load for (checkpoints/load.py)
    adapter: str | None = None  # a LoRA adapter folder (absolute path) merged at load


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401  (the extra may be half installed: ray without ray[data])
    except ImportError:
        raise InputError("--engine ray needs Ray: pip install 'janus-cli[ray]'") from None
    return ray


def connect(opts: RayOptions):
    """Join the cluster (or start a local one) once per process. Ray's progress goes to stderr
    only when it is a terminal and without -q, like the local engine's."""
    ray = import_ray()
    if not ray.is_initialized():
        join(ray, opts)
    if not show_progress(opts.quiet):
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # its "progress bars disabled" notice too
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = show_progress(opts.quiet)
    context.print_on_execution_start = False
    return ray


def join(ray, opts: RayOptions, flags: tuple[str, str] = ("--cpus-per-worker", "--gpus-per-worker")) -> None:
    """`ray.init` with one-line errors: an address where nothing listens or that refuses this
    process fails within seconds (preflight.probe), and so does a cluster with no node that can
    hold one worker, which Ray would otherwise wait for forever. FLAGS name the options that
    set a worker's CPUs and GPUs, in that error."""
    address = opts.address or os.environ.get("RAY_ADDRESS") or None
    if address:
        preflight.probe(address, from_env=not opts.address)
    level = logging.ERROR if opts.quiet else logging.WARNING
    try:
        ray.init(
            address=opts.address, logging_level=level, log_to_driver=not opts.quiet, include_dashboard=False
        )
    except ray.exceptions.AuthenticationError:  # a refusal the probe could not see
        raise ConnectionFailed(preflight.refused(address or "this machine")) from None
    except ConnectionError as e:
        first = (str(e).splitlines() or [""])[0][:300]
        raise ConnectionFailed(f"cannot join the Ray cluster at {address}: {first}") from None
    where = f"the Ray cluster at {address}" if address else "the local Ray cluster (this machine)"
    options = f"{flags[0]} {opts.cpus_per_worker:g}"
    if opts.gpus_per_worker:
        options += f", {flags[1]} {opts.gpus_per_worker:g}"
    try:
        preflight.check_fits(ray.nodes(), opts.cpus_per_worker, opts.gpus_per_worker or 0, where, options)
    except InputError:
        ray.shutdown()  # a local cluster started for this run goes with it
        raise


def stream(
    rows: list[dict],
    worker: type,
    worker_args: dict,
    opts: RayOptions,
    decode: Callable[[dict], dict] | None = None,
) -> Iterator[dict]:
    """Every output row of WORKER over ROWS (one row = one model batch), as it finishes.

    Each row is its own block so that batches spread over the actors; DECODE (if given) runs
    first on each row as a plain CPU task. Ray restarts a killed actor and re-runs its batch
    (actors: max_restarts=-1, max_task_retries=-1 by default in Ray Data), so a batch is
    delivered once it succeeds; the caller de-duplicates by item id in case one is re-run.
    """
    ray = connect(opts)  # before the stderr filter: a local cluster started here must not inherit its pipe
    with stderr_filter.dropping(*NOTICES) if opts.quiet else contextlib.nullcontext():
        yield from _run(ray, rows, worker, worker_args, opts, decode)


def _run(ray, rows: list[dict], worker: type, worker_args: dict, opts: RayOptions, decode) -> Iterator[dict]:
    ds = ray.data.from_items(rows, override_num_blocks=len(rows))
    if decode is not None:
        ds = ds.map(decode, num_cpus=DECODE_CPUS)
    ds = ds.map_batches(
        worker,
        fn_constructor_kwargs=worker_args,
        batch_size=1,
        # one batch in flight per actor: a queue behind a busy actor would leave another idle
        compute=ray.data.ActorPoolStrategy(
            size=min(opts.workers, len(rows)), max_tasks_in_flight_per_actor=1
        ),
        num_cpus=opts.cpus_per_worker,
        num_gpus=opts.gpus_per_worker or None,
    )
    # each block as soon as it is done: iter_rows() holds a finished one back until the next
    # arrives, which would leave a finished item unwritten when the driver is killed
    for block in ds.iter_batches(batch_size=None, prefetch_batches=0, batch_format="pyarrow"):
        yield from block.to_pylist()


def show_progress(quiet: bool) -> bool:
    """Ray's progress bars, like the local engine's: on a terminal, without -q."""
    return not quiet and sys.stderr.isatty()


def open_model(ref: ModelRef, threads: int, vae: str | None = None):
    """The actor's model (a janus_cli.Janus), loaded once; THREADS pins torch's CPU threads
    (fp32 results depend on how a matmul is split across threads, so a fixed count keeps
    them reproducible)."""
    import torch

    import janus_cli

    torch.set_num_threads(threads)
    return janus_cli.load(
        ref.model,
        ref.device,
        ref.dtype,
        ref.quantize,
        ref.revision,
        vae,
        compile=ref.compile,
        parts=ref.parts,
        adapter=ref.adapter,
    )


def describe_error(e: Exception) -> str:
    """An actor's failure as one line: a user error's own message, else its type and first line."""
    if isinstance(e, JanusError):
        return str(e)
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"
