"""The version, in one place (the package, recipes and --version read it)."""

__version__ = "0.1.0"
