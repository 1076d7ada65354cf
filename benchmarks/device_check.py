"""The prepared device check of janus-cli: tests, the command line and timings, stage by stage.

Run it first when a GPU shows up: GPU time is rare and short, so the check has to exist, tested
on the CPU, before one does.

    bash benchmarks/device_check.sh [--device cpu|cuda] [--quick] [--only STAGE,...] [--budget S]

Stages, in order, each in its own process with its own timeout inside one total budget, so that a
hang or a crash costs one stage and the later ones still run:

    environment   torch, CUDA and the device, as this Python sees them
    fixtures      the tiny checkpoints synthesized from their manifests (tests/.cache does not
                  travel to a device machine; a broken link there is replaced by a temp folder)
    tests         the parity and pipeline tests with JANUS_TEST_DEVICE=DEVICE, and the bf16 ones
    cli           `janus` end to end: describe, generate -n 4, flow-generate, --quantize int8 and
                  int4, --compile
    ar-pro-1b     Janus-Pro-1B image-token step at N = 1, 16, 64: eager, --compile, the official
                  loop (transformers), interleaved; seconds per image end to end; peak memory
    int8-pro-7b   Janus-Pro-7B int8: weight bytes and peak GPU memory of a one-image run
    flow-1.3b     a JanusFlow-1.3B image at 30 steps, end to end
    ar-pro-7b     as ar-pro-1b, for Janus-Pro-7B

Full runs time full-size random-weight models (benchmarks/run.py builds them); --quick runs
everything on the tiny fixtures instead (the CPU dry run of the test suite, tests/test_device_check.py).
Writes OUT/device-check-<date>-<device>[-quick].json and .log (OUT: env OUT, else
benchmarks/results) and exits 1 when any stage did not pass.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parents[1]
SLACK_ENV = "DEVICE_CHECK_SLACK"  # --slack, for the timeouts the stages set themselves


@dataclass(frozen=True)
class Stage:
    name: str
    timeout_s: float  # full run
    quick_timeout_s: float  # --quick, on the tiny fixtures


STAGES = [
    Stage("environment", 60, 30),
    Stage("fixtures", 120, 30),  # 4 GB of synthetic weights, hashed in parallel
    Stage("tests", 150, 45),
    Stage("cli", 150, 60),  # six processes, one of them compiling
    Stage("ar-pro-1b", 150, 30),  # three compiles (one per N)
    Stage("int8-pro-7b", 60, 20),
    Stage("flow-1.3b", 45, 20),
    Stage("ar-pro-7b", 150, 30),
    Stage("finetune", 150, 30),  # LoRA steps of 1B and 7B (generate and describe samples)
]  # the sum is past the budget: the budget binds, and `--only` gives a later stage a second try
BUDGET_S = {False: 480, True: 115}  # the 8 minutes on the GPU; 2 minutes for the dry run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    ap.add_argument("--quick", action="store_true", help="the tiny fixture models only (the CPU dry run)")
    ap.add_argument(
        "--only", default="", help="comma-separated stages to run (default: all), e.g. for a second try"
    )
    ap.add_argument(
        "--budget", type=float, default=None, help="total seconds (default 480, 115 with --quick)"
    )
    ap.add_argument(
        "--slack", type=float, default=1.0, help="multiply each stage's timeout (a shared or slow machine)"
    )
    ap.add_argument("--out", default=None, help="results folder (default: env OUT, else benchmarks/results)")
    ap.add_argument("--stage", help=argparse.SUPPRESS)  # run one stage in this process (the driver's child)
    ap.add_argument("--cases", help=argparse.SUPPRESS)  # where the child appends its cases, one JSON a line
    args = ap.parse_args()
    if args.stage:
        run_stage(args.stage, args.device, args.quick, Path(args.cases))
        return
    names = [s.name for s in STAGES]
    only = [s for s in args.only.split(",") if s]
    unknown = set(only) - set(names)
    if unknown:
        sys.exit(f"error: unknown stages {sorted(unknown)}; choose from {', '.join(names)}")
    out = Path(args.out or os.environ.get("OUT") or ROOT / "benchmarks" / "results")
    out.mkdir(parents=True, exist_ok=True)
    stem = f"device-check-{time.strftime('%Y-%m-%d-%H%M')}-{args.device}{'-quick' if args.quick else ''}"
    result = drive([s for s in STAGES if not only or s.name in only], args, out / f"{stem}.log")
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    failed = [s["name"] for s in result["stages"] if s["status"] != "passed"]
    print(
        f"wrote {out / stem}.json ({result['seconds']:.0f} s); "
        + (f"not passed: {', '.join(failed)}" if failed else "all stages passed"),
        flush=True,
    )
    sys.exit(1 if failed else 0)


def drive(stages: list[Stage], args, log_path: Path) -> dict:
    """Run STAGES one by one as child processes, each under min(its timeout, what the budget has
    left), appending their output to LOG_PATH; the results document."""
    budget = args.budget or BUDGET_S[args.quick]
    env = test_env(args.device, args.slack)
    start = time.monotonic()
    rows = []
    with open(log_path, "a") as log, tempfile.TemporaryDirectory() as tmp:
        for stage in stages:
            left = budget - (time.monotonic() - start)
            timeout = min((stage.quick_timeout_s if args.quick else stage.timeout_s) * args.slack, left)
            if timeout < 5:
                rows.append(
                    {
                        "name": stage.name,
                        "status": "skipped",
                        "error": "the total budget was spent",
                        "cases": [],
                    }
                )
                continue
            cases = Path(tmp) / f"{stage.name}.jsonl"
            cmd = [
                sys.executable,
                __file__,
                "--stage",
                stage.name,
                "--device",
                args.device,
                "--cases",
                str(cases),
            ]
            log.write(f"\n===== {stage.name} (timeout {timeout:.0f} s) =====\n")
            log.flush()
            offset = log.tell()
            t, cpu = time.monotonic(), children_cpu_s()
            rc = run_bounded(cmd + (["--quick"] if args.quick else []), env, log, timeout)
            seconds = time.monotonic() - t
            status = "passed" if rc == 0 else "timeout" if rc is None else "failed"
            row = {
                "name": stage.name,
                "status": status,
                "seconds": round(seconds, 2),
                "cpu_seconds": round(children_cpu_s() - cpu, 2),
                "timeout_s": round(timeout),
                "returncode": rc,
                "error": None if rc == 0 else tail(log_path, offset),
                "cases": read_cases(cases),
            }
            print(f"{stage.name:<12} {status:<8} {seconds:6.1f} s", flush=True)
            rows.append(row)
    env_cases = next((s["cases"] for s in rows if s["name"] == "environment"), [])
    return {
        "command": " ".join(["bash benchmarks/device_check.sh", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "device": args.device,
        "quick": args.quick,
        "budget_s": budget,
        "seconds": round(time.monotonic() - start, 2),
        "cpu_seconds": round(children_cpu_s(), 2),  # what the wall time would be on an idle core
        "passed": all(s["status"] == "passed" for s in rows),
        "environment": env_cases[0] if env_cases else None,
        "targets": targets([c for s in rows for c in s["cases"]]),
        "stages": rows,
    }


def children_cpu_s() -> float:
    """User + system CPU seconds of all finished children and their children (pytest's, janus's)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def test_env(device: str, slack: float) -> dict:
    """The children's environment: the worktree first on PYTHONPATH, the test device, the
    timeout slack, and a fixture cache that works (tests/.cache may be a link to a folder of
    another machine)."""
    env = {**os.environ, "JANUS_TEST_DEVICE": device, "PYTHONUNBUFFERED": "1", SLACK_ENV: str(slack)}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    cache = ROOT / "tests" / ".cache"
    if "JANUS_TEST_CACHE" not in env and cache.is_symlink() and not cache.exists():
        env["JANUS_TEST_CACHE"] = str(Path(tempfile.gettempdir()) / "janus-test-cache")
    return env


def run_bounded(cmd: list[str], env: dict, log, timeout: float) -> int | None:
    """CMD's exit status, its output appended to LOG; None when it ran past TIMEOUT, and then its
    whole process group (pytest's or janus's children too) is killed."""
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
    )
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.write(f"\n[killed after {timeout:.0f} s]\n")
        log.flush()
        return None


def tail(path: Path, offset: int, lines: int = 8) -> str:
    """The last LINES lines a stage wrote to the log (from OFFSET on)."""
    with open(path) as f:
        f.seek(offset)
        return "\n".join(f.read().strip().splitlines()[-lines:])


def read_cases(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def targets(cases: list[dict]) -> list[dict]:
    """The issue's targets on the H200, as ratios of the same run (None: not measured)."""

    def pick(stage: str, **want) -> dict:
        return next(
            (c for c in cases if c.get("stage") == stage and all(c.get(k) == v for k, v in want.items())), {}
        )

    n16, n1 = pick("ar-pro-1b", kind="step", n=16), pick("ar-pro-1b", kind="step", n=1)
    int8 = pick("int8-pro-7b", kind="int8-memory")
    rows = [
        (
            "Janus-Pro-1B step N=16: official loop / janus --compile >= 4",
            n16.get("compiled_speedup_vs_peer"),
            4.0,
            ">=",
        ),
        ("Janus-Pro-1B step N=1: eager / --compile >= 1.5", n1.get("compiled_over_eager"), 1.5, ">="),
        ("Janus-Pro-7B int8 peak GPU memory (GB) < 9", int8.get("peak_gb"), 9.0, "<"),
    ]
    return [
        {"target": t, "value": v, "met": None if v is None else (v >= bound if op == ">=" else v < bound)}
        for t, v, bound, op in rows
    ]


def run_stage(name: str, device: str, quick: bool, cases: Path) -> None:
    """The child: stage NAME, appending each finished case to CASES as it goes (a stage that runs
    out of time keeps the cases it finished)."""
    sys.path.insert(0, str(Path(__file__).parent))
    import device_stages

    if name not in device_stages.STAGES:  # a timing stage (imports torch and the models)
        import device_timing as device_stages  # noqa: F811

    def record(case: dict) -> None:
        case = {"stage": name, **case}
        print(json.dumps(case), flush=True)
        with open(cases, "a") as f:
            f.write(json.dumps(case) + "\n")

    device_stages.STAGES[name](device, quick, record)


if __name__ == "__main__":
    main()
