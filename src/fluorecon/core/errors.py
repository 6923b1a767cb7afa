"""Exceptions raised by fluorecon.

Every error a user can cause derives from :class:`FluoreconError`. Its message is one
line in three parts: what was received, what is required, and how to fix it. The CLI
prints that line and exits with code 2; it never shows a traceback for these.
"""

from __future__ import annotations


class FluoreconError(Exception):
    """Base class of every error caused by user input or configuration."""


class InputFileError(FluoreconError):
    """A file is missing, truncated, corrupt, or not an image fluorecon can read."""


class DataError(FluoreconError):
    """Array content is unusable: empty, wrong dtype, NaN or infinite values."""


class AxesError(FluoreconError):
    """An axes string is invalid or does not match the data."""


class ConfigError(FluoreconError):
    """A method or tool configuration is invalid."""


class OutputExistsError(FluoreconError):
    """An output path exists (or is an input) and overwriting was not allowed."""


def message(received: str, required: str, fix: str) -> str:
    """Format a one-line error message from its three parts.

    Parameters
    ----------
    received : str
        What was received, e.g. ``"axes 'YXQ'"``.
    required : str
        What is required, e.g. ``"letters from 'STCZYX'"``.
    fix : str
        How to fix it, e.g. ``"pass --axes YX"``.

    Returns
    -------
    str
        ``"Got <received>; need <required>. <fix>"`` on one line.

    Examples
    --------
    >>> message("axes 'YXQ'", "letters from 'STCZYX'", "Pass --axes YX.")
    "Got axes 'YXQ'; need letters from 'STCZYX'. Pass --axes YX."
    """
    text = f"Got {received}; need {required}. {fix}"
    return " ".join(text.split())
