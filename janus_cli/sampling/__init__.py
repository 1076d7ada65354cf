"""Sampling: small pure functions and generator loops that take models as arguments."""
