"""Errors the command-line tools turn into one clear line and an exit code."""

from __future__ import annotations


class BenchError(Exception):
    """A failure the user can act on; the message names the problem and the fix."""

    exit_code = 1


class UsageError(BenchError):
    """Bad arguments or bad input data: exit 2, nothing written."""

    exit_code = 2


class DataError(UsageError):
    """A data file that cannot be used as given (missing column, NaN targets, ...)."""


class SourceUnavailable(BenchError):
    """A data source that cannot be reached (offline, checksum failing twice, ...)."""
