"""Loading a served model through the front door, `janus_cli.load` (the server never imports
`janus_cli.cli`), and the name it is served under."""

from __future__ import annotations

from pathlib import Path

DEFAULT_VAE = "sdxl-vae"  # `janus flow-generate --vae` default


def load(
    model: str,
    device: str = "auto",
    dtype: str = "auto",
    quantize: str = "none",
    vae: str | None = None,
    adapter: str | None = None,
):
    """MODEL loaded whole (chat needs the vision encoder, images the decoders), with the LoRA
    ADAPTER folder merged if given, as a `Janus`; JanusFlow's VAE (VAE, default sdxl-vae) is
    loaded now rather than on the first request, so that /health says 200 only once everything
    is in memory."""
    import janus_cli

    janus = janus_cli.load(model, device, dtype, quantize, vae=vae or DEFAULT_VAE, adapter=adapter)
    if janus.family == "janusflow":
        assert janus.vae is not None
    return janus


def served_name(ref: str, adapter: str | None = None) -> str:
    """The name a model is served under: its alias (janus-pro-1b) for an alias or a known hub
    repo, else its folder's name, else the repo id as given; with an ADAPTER folder, `+` and
    its name (janus-pro-1b+style)."""
    from janus_cli.checkpoints.hub import spec_for

    spec = spec_for(ref)
    path = Path(ref).expanduser()
    name = spec.name if spec is not None else path.resolve().name if path.is_dir() else ref
    return name if adapter is None else f"{name}+{Path(adapter).expanduser().resolve().name}"


def served_names(refs: list[str], adapter: str | None = None) -> list[str]:
    """The served name of each of REFS (served_name), refused in one line when two coincide or
    when ADAPTER is given with more than one model."""
    from janus_cli.errors import InputError

    if adapter is not None and len(refs) > 1:
        raise InputError("--adapter applies to one model: give a single -m")
    names = [served_name(r, adapter) for r in refs]
    if len(set(names)) != len(names):
        raise InputError(f"two models would be served under one name: {', '.join(names)}")
    return names
