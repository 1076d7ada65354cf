"""Loading a served model, in the one function `load` with the signature of the Python API's
`janus_cli.load` (the issue "One front door"); when that lands, `load` becomes a call to it.
The server never imports `janus_cli.cli`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_VAE = "sdxl-vae"  # `janus flow-generate --vae` default


@dataclass
class Loaded:
    """What the server needs of a loaded model (the attributes of the API's `Janus`)."""

    name: str  # -m as given
    session: object  # pipelines.session.Session
    vae: object | None  # models.vae.VAEDecoder for JanusFlow, else None
    vae_name: str | None = None

    @property
    def family(self) -> str:
        return self.session.config.family


def load(
    model: str,
    device: str = "auto",
    dtype: str = "auto",
    quantize: str = "none",
    revision: str | None = None,
    vae: str | None = None,
) -> Loaded:
    """Resolve MODEL (a folder, an alias or a hub repo id; downloaded if needed) and load all of
    it, and for JanusFlow the VAE (VAE or sdxl-vae) in the same dtype and device."""
    from janus_cli.checkpoints.hub import resolve
    from janus_cli.checkpoints.vae import load_vae
    from janus_cli.pipelines.session import open_session
    from janus_cli.runtime import choose_device, choose_dtype, choose_quantize

    dev = choose_device(device)
    dt = choose_dtype(dtype, dev)
    session = open_session(
        model, resolve(model, revision, progress=False), dev, dt, choose_quantize(quantize)
    )
    if session.config.family != "janusflow":
        return Loaded(model, session, None)
    vae = vae or DEFAULT_VAE
    return Loaded(model, session, load_vae(resolve(vae, progress=False), dtype=dt, device=dev), vae)


def served_name(ref: str) -> str:
    """The name a model is served under: its alias (janus-pro-1b) for an alias or a known hub
    repo, else its folder's name, else the repo id as given."""
    from janus_cli.checkpoints.hub import spec_for

    spec = spec_for(ref)
    if spec is not None:
        return spec.name
    path = Path(ref).expanduser()
    return path.resolve().name if path.is_dir() else ref
