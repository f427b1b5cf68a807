"""Reusable constrained field types whose errors read ``must be 1-65535 (got 70000)``.

Every number is finite and bounded above and below (`BOUNDS` documents each bound in one
place, and docs/config.md lists them); every string and path that can reach a file, a unit,
a program section or an argv is free of control characters and of lone surrogates.
"""

from __future__ import annotations

import math
import re
import signal
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Strict
from pydantic_core import PydanticCustomError

SERVICE_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,62}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# C0 controls, DEL and C1 controls: none of them belongs in a file, a unit or an argv;
# lone surrogates cannot even be encoded as UTF-8
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL_NAMES = {"\0": "NUL", "\n": "newline", "\r": "carriage return", "\t": "tab"}

DAY = 86400.0


def _between(lo: float, hi: float):
    def check(value: float) -> float:
        if not math.isfinite(value) or value < lo or value > hi:
            raise PydanticCustomError("range", "must be {want} (got {got})",
                                      {"want": f"{_fmt(lo)}-{_fmt(hi)}", "got": value})
        return value

    return AfterValidator(check)


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


#: words that follow ``deploy`` and ``logs`` as subcommands (``deploy history``, ``logs
#: stats``): a service of that name could not be named after them (a test keeps this
#: list equal to the commands)
RESERVED_NAMES = frozenset({"history", "run", "tail", "stats", "export", "archive", "rotate",
                            "monitor"})


ROUTER_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def check_router_name(value: str) -> str:
    if not ROUTER_NAME.match(value):
        raise PydanticCustomError(
            "router", "invalid router name '{got}': name an installed router, such as haproxy",
            {"got": value[:60]})
    return value


def check_service_name(value: str) -> str:
    if not SERVICE_NAME.match(value):
        raise PydanticCustomError(
            "service_name",
            "invalid service name '{got}': use 1-63 characters a-z 0-9 . _ -, starting with a"
            " letter",
            {"got": value},
        )
    if value in RESERVED_NAMES:
        raise PydanticCustomError(
            "service_name",
            "service name '{got}' is a subcommand of 'tts-ops deploy' or 'tts-ops logs'"
            " ('deploy {got}', 'logs {got}' would not name it): rename the service",
            {"got": value},
        )
    return value


def check_signal(value: str) -> str:
    name = value.upper().removeprefix("SIG")
    if not hasattr(signal.Signals, "SIG" + name):
        raise PydanticCustomError(
            "signal", "unknown signal '{got}': use a name such as TERM, INT, QUIT", {"got": value}
        )
    return name


def control_character(value: str) -> str | None:
    """The name of the first control character in ``value`` (None when there is none)."""
    m = _CONTROL.search(value)
    if m is None:
        return None
    ch = m.group()
    if "\ud800" <= ch <= "\udfff":
        return "a lone surrogate"
    return _CONTROL_NAMES.get(ch, f"control character U+{ord(ch):04X}")


def check_text(value: str) -> str:
    found = control_character(value)
    if found is not None:
        raise PydanticCustomError(
            "text", "must not contain {what}: it would reach a file, a unit or a command line",
            {"what": found})
    return value


def check_path(value: Path) -> Path:
    check_text(str(value))
    if not value.is_absolute():
        raise PydanticCustomError("path", "must be an absolute path (got '{got}')",
                                  {"got": str(value)})
    return value


_MEMORY = re.compile(r"^(\d{1,19}[KMGT]?|infinity)$")


def check_memory(value: str) -> str:
    if not _MEMORY.match(value):
        raise PydanticCustomError(
            "memory", "must be bytes (at most 19 digits) with an optional K, M, G or T suffix,"
            " or infinity (got '{got}')", {"got": value})
    return value


def _path_string(value: object) -> object:
    # a path is the one string-shaped field lax mode would coerce from a number: refuse it
    if not isinstance(value, str | Path):
        raise PydanticCustomError("path_type", "must be a path string (got {got})",
                                  {"got": value})
    return value


#: every numeric bound, by type name: (low, high). docs/config.md repeats them (a test
#: compares), so that each limit is written down once for users.
BOUNDS: dict[str, tuple[float, float]] = {
    "Port": (1, 65535),
    "Count": (0, 10_000),
    "PositiveCount": (1, 10_000),
    "Seconds": (0, DAY),
    "PositiveSeconds": (0.001, DAY),
    "Backoff": (1, 10),
    "Instances": (1, 64),
    "Scale": (0, 64),
    "Bytes": (1, 2**40),
    "Megabytes": (0, 2**30),
    "Percent": (1, 100_000),
    "ExitCode": (0, 255),
    "Fraction": (0, 1),
    "Step": (1, 100),
    "Tasks": (1, 10_000_000),
}


Port = Annotated[int, Strict(), _between(*BOUNDS["Port"])]
Count = Annotated[int, Strict(), _between(*BOUNDS["Count"])]
PositiveCount = Annotated[int, Strict(), _between(*BOUNDS["PositiveCount"])]
Seconds = Annotated[float, Strict(), _between(*BOUNDS["Seconds"])]
PositiveSeconds = Annotated[float, Strict(), _between(*BOUNDS["PositiveSeconds"])]
Backoff = Annotated[float, Strict(), _between(*BOUNDS["Backoff"])]
Instances = Annotated[int, Strict(), _between(*BOUNDS["Instances"])]
Scale = Annotated[int, Strict(), _between(*BOUNDS["Scale"])]
Bytes = Annotated[int, Strict(), _between(*BOUNDS["Bytes"])]
Megabytes = Annotated[int, Strict(), _between(*BOUNDS["Megabytes"])]
Percent = Annotated[int, Strict(), _between(*BOUNDS["Percent"])]
ExitCode = Annotated[int, Strict(), _between(*BOUNDS["ExitCode"])]
Fraction = Annotated[float, Strict(), _between(*BOUNDS["Fraction"])]
Step = Annotated[int, Strict(), _between(*BOUNDS["Step"])]
Tasks = Annotated[int, Strict(), _between(*BOUNDS["Tasks"])]
MemorySize = Annotated[str, AfterValidator(check_memory)]
ServiceName = Annotated[str, AfterValidator(check_service_name)]
RouterName = Annotated[str, AfterValidator(check_router_name)]
SignalName = Annotated[str, AfterValidator(check_signal)]
SafeText = Annotated[str, AfterValidator(check_text)]
SafePath = Annotated[Path, Strict(False), BeforeValidator(_path_string),
                     AfterValidator(check_path)]
