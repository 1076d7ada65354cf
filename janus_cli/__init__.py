"""janus-cli: describe and generate images with DeepSeek's Janus family.

The Python API (see `janus_cli.api`): `load()` returns a `Janus` with `describe`,
`stream_describe`, `generate` and `chat`. Importing this package loads no torch.
"""

from janus_cli.api import Chat, GeneratedImage, Janus, load
from janus_cli.errors import Cancelled, JanusError
from janus_cli.version import __version__

__all__ = ["Cancelled", "Chat", "GeneratedImage", "Janus", "JanusError", "load", "__version__"]
