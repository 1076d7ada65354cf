"""janus-cli: describe and generate images with DeepSeek's Janus family."""

__version__ = "0.1.0"
