"""User-facing errors. The CLI prints `error: <message>` and exits with `exit_code`."""


class JanusError(Exception):
    """Base class for every error a user can cause and fix."""

    exit_code = 1


class InputError(JanusError):
    """Bad option value, missing or unreadable input file, prompt too long."""

    exit_code = 2


class CheckpointError(JanusError):
    """A checkpoint is missing, truncated, corrupt, unsafe or does not match its config."""

    exit_code = 3


class DownloadError(JanusError):
    """The weights are not local and cannot be fetched (no network, unknown repo)."""

    exit_code = 4


class OutputError(JanusError):
    """An output file cannot be written (a read-only or full disk, a file where a folder is needed)."""

    exit_code = 73  # sysexits' EX_CANTCREAT


class Cancelled(JanusError):
    """A run stopped because its caller asked (a `cancel` event, Ctrl-C)."""

    exit_code = 130


class ConnectionFailed(JanusError):
    """A cluster (--ray-address, RAY_ADDRESS) is unreachable or refuses this process."""

    exit_code = 6
