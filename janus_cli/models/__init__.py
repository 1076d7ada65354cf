"""Model code: inference-only modules whose parameter names mirror the published checkpoints."""
