"""Checks before a Ray job, each failing in one line that says what to do.

Left to itself, `ray.init` retries a refused or absent cluster for 20-40 s while its C++ core
prints a warning per attempt, then raises a bare `ConnectionError`; and a job whose workers fit
no node waits for resources forever. So, before the job:

1. `probe(address)`: a TCP connect (bounded) tells "nothing listens" at once; a handshake with
   the cluster's GCS tells "token authentication refused us" at once (Ray >= 2.5x turns token
   authentication on for `ray start` clusters whenever a token exists).
2. `check_fits(...)`: one worker's CPUs and GPUs against every live node (and the autoscaler's
   node types, if the cluster has any): a worker that fits nowhere fails now.
"""

from __future__ import annotations

import os
import socket
from collections import Counter

from janus_cli.distributed.stderr_filter import silenced
from janus_cli.errors import ConnectionFailed, InputError

CONNECT_TIMEOUT_S = 5.0  # per step: the TCP connect, then the GCS handshake


def host_port(address: str) -> tuple[str, int] | None:
    """HOST:PORT of a GCS address; None for the forms Ray resolves itself (auto, ray://, http://)."""
    if "://" in address or ":" not in address:
        return None
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        return None
    return host.strip("[]"), int(port)


TOKEN_PLACES = (
    "RAY_AUTH_TOKEN, or the file named by RAY_AUTH_TOKEN_PATH "
    "(default ~/.ray/auth_token, a copy of the head's)"
)


def refused(address: str) -> str:
    """What to set when the cluster rejects this process's token (or the lack of one)."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
        what = "refused this process's token: give it the cluster's token"
    else:
        what = "uses token authentication: set RAY_AUTH_MODE=token and the cluster's token"
    return f"the Ray cluster at {address} {what} in {TOKEN_PLACES}"


def probe(address: str, from_env: bool, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raises ConnectionFailed unless a Ray cluster listens at ADDRESS and lets this process in.
    FROM_ENV: the address came from RAY_ADDRESS, not --ray-address (Ray treats them differently)."""
    target = host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=timeout_s):
            pass
    except OSError as e:
        reason = "nothing answers" if isinstance(e, TimeoutError) else (e.strerror or str(e)).lower()
        raise ConnectionFailed(
            f"no Ray cluster at {address} ({reason} within {timeout_s:g} s): "
            "start one with `ray start --head`, or fix --ray-address / RAY_ADDRESS"
        ) from None
    _token_setup(address, from_env)
    _handshake(address, timeout_s)


def _token_setup(address: str, from_env: bool) -> None:
    """What `ray.init` does about the token before it connects, done first so the handshake sees
    the same mode: with RAY_ADDRESS (not with an explicit address) and RAY_AUTH_MODE unset, a
    token file turns token mode on; in token mode, no token at all is an error (Ray's C++ client
    would abort the process on it)."""
    try:
        from ray._private.authentication import authentication_token_setup as setup
        from ray.exceptions import AuthenticationError
    except ImportError:  # a Ray without token authentication
        return
    try:
        if from_env:
            setup.maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
        setup.ensure_token_if_auth_enabled(None, create_token_if_missing=False)
    except AuthenticationError:
        raise ConnectionFailed(
            f"RAY_AUTH_MODE=token is set, but no token for the Ray cluster at {address}: "
            f"put it in {TOKEN_PLACES}"
        ) from None


def _handshake(address: str, timeout_s: float) -> None:
    """Ask the GCS for the cluster id, as `ray.init` does first, but once and with a deadline.
    The client is Ray's private one; a Ray without it skips this (ray.init's errors are mapped)."""
    import ray.exceptions

    try:
        from ray._raylet import InnerGcsClient

        standalone = InnerGcsClient.standalone
    except (ImportError, AttributeError):
        return
    try:
        with silenced():  # its own warning line says what the exception says
            standalone(address, None, int(timeout_s * 1000))
    except ray.exceptions.AuthenticationError:
        raise ConnectionFailed(refused(address)) from None
    except ray.exceptions.RayError as e:
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise ConnectionFailed(f"{address} answers, but not as a Ray cluster ({first})") from None
    except TypeError:  # a different private signature
        return


def check_fits(nodes: list[dict], cpus: float, gpus: float, where: str, options: str) -> None:
    """Raises InputError unless one worker (CPUS, GPUS) fits a live node of NODES (`ray.nodes()`)
    or a node type the cluster's autoscaler may add."""
    live = [n.get("Resources", {}) for n in nodes if n.get("Alive")]
    if any(_fits(r.get("CPU", 0), r.get("GPU", 0), cpus, gpus) for r in live) or _autoscaler_fits(cpus, gpus):
        return
    need = _amount(cpus, "CPU") + (f" and {_amount(gpus, 'GPU')}" if gpus else "")
    counts = Counter(
        _amount(r.get("CPU", 0), "CPU") + (f" + {_amount(r['GPU'], 'GPU')}" if r.get("GPU") else "")
        for r in live
    )
    has = (
        ", ".join(f"{n} node{'s' if n > 1 else ''} of {kind}" for kind, n in counts.items()) or "no live node"
    )
    raise InputError(f"{where} has no node with {need} for one worker ({options}): it has {has}")


def _fits(have_cpus: float, have_gpus: float, cpus: float, gpus: float) -> bool:
    return have_cpus >= cpus and have_gpus >= gpus


def _amount(value: float, unit: str) -> str:
    return f"{value:g} {unit}{'s' if value != 1 else ''}"


def _autoscaler_fits(cpus: float, gpus: float) -> bool:
    """Whether an autoscaler node type (Ray's private cluster config) could hold one worker."""
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
        groups = list(config.node_group_configs) if config is not None else []
        return any(
            g.max_count != 0 and _fits(g.resources.get("CPU", 0), g.resources.get("GPU", 0), cpus, gpus)
            for g in groups
        )
    except Exception:  # private API: no autoscaler information is no autoscaler
        return False
