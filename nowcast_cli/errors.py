"""Exception hierarchy: every error a user can cause is a `NowcastError`.

The command line turns these into a one-line ``Error: …`` and exit code 1; any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class NowcastError(Exception):
    """Base class of all errors caused by input, configuration or environment."""


class UnknownNameError(NowcastError, KeyError):
    """A name that is not in a registry (model, loss, source, metric)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConfigError(NowcastError, ValueError):
    """An option or configuration value that is invalid."""


class DataError(NowcastError):
    """Input data that cannot be used (corrupt, truncated, wrong product, too short)."""


class StoreError(NowcastError):
    """A Zarr store that is missing, incompatible or not writable."""


class MissingDependencyError(NowcastError, ImportError):
    """An optional dependency that is not installed."""


class RunError(NowcastError):
    """A run folder or checkpoint that is missing, incompatible or unusable."""


class TrainingError(NowcastError):
    """Training that cannot go on (a NaN or infinite loss)."""
