"""Typed errors of the model package."""

from __future__ import annotations


class ModelError(RuntimeError):
    """The model failed while running (e.g. out of memory); the engine stays usable."""


class CheckpointError(ValueError):
    """A checkpoint directory is malformed, incomplete or refused (pickle, unknown layout)."""
