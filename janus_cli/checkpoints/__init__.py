"""Finding, reading and strictly loading checkpoints in the published layouts."""
