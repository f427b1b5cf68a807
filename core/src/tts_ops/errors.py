"""Handled errors: the CLI prints their message on one line and exits with their code.

Anything that is not a `TtsOpsError` is a bug and keeps its traceback (shown with --debug).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_MISSING = 3


def printable(text: str, limit: int | None = None) -> str:
    """``text`` with every non-printable character escaped (``\\x1b``), cut at ``limit``.

    Error lines quote config values and service output: neither may move the cursor,
    clear the screen or add a line of its own.
    """
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
                       for ch in text)
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


class TtsOpsError(Exception):
    """Base of every error the CLI reports as one line."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: extra lines shown after the message (e.g. the last log lines of a failed start)
        self.details = details or []


class OperationFailed(TtsOpsError):
    """The operation ran but did not succeed (service not ready, deploy rolled back)."""

    exit_code = EXIT_FAILED


class ConfigError(TtsOpsError):
    """Bad usage or bad config. `problems` holds every problem found, one line each."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        super().__init__(message, details=problems)
        self.problems = problems or [message]


class MissingComponent(TtsOpsError):
    """A needed backend, plugin or process manager is missing or unreachable."""

    exit_code = EXIT_MISSING


class PluginError(TtsOpsError):
    """A plugin is broken in a way the current command cannot work around."""

    exit_code = EXIT_MISSING
