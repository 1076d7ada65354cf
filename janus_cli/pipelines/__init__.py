"""Pipelines: prompt/image in, typed events out. No printing, no progress bars."""
