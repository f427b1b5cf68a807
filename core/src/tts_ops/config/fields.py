"""Reusable constrained field types whose errors read ``must be 1-65535 (got 70000)``."""

from __future__ import annotations

import re
import signal
from typing import Annotated

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

SERVICE_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,62}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _between(lo: float, hi: float | None):
    def check(value: float) -> float:
        if value < lo or (hi is not None and value > hi):
            want = f"{_fmt(lo)}-{_fmt(hi)}" if hi is not None else f">= {_fmt(lo)}"
            raise PydanticCustomError("range", "must be {want} (got {got})",
                                      {"want": want, "got": value})
        return value

    return AfterValidator(check)


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def check_service_name(value: str) -> str:
    if not SERVICE_NAME.match(value):
        raise PydanticCustomError(
            "service_name",
            "invalid service name '{got}': use 1-63 characters a-z 0-9 . _ -, starting with a"
            " letter",
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


def check_no_nul(value: str) -> str:
    if "\0" in value or "\n" in value:
        raise PydanticCustomError("text", "must not contain NUL or newline characters", {})
    return value


_MEMORY = re.compile(r"^(\d+[KMGT]?|infinity)$")


def check_memory(value: str) -> str:
    if not _MEMORY.match(value):
        raise PydanticCustomError(
            "memory", "must be bytes with an optional K, M, G or T suffix, or infinity"
            " (got '{got}')", {"got": value})
    return value


Port = Annotated[int, _between(1, 65535)]
MemorySize = Annotated[str, AfterValidator(check_memory)]
NonNegInt = Annotated[int, _between(0, None)]
PositiveInt = Annotated[int, _between(1, None)]
Seconds = Annotated[float, _between(0, None)]
PositiveSeconds = Annotated[float, _between(0.001, None)]
Instances = Annotated[int, _between(1, 64)]
ServiceName = Annotated[str, AfterValidator(check_service_name)]
SignalName = Annotated[str, AfterValidator(check_signal)]
SafeText = Annotated[str, AfterValidator(check_no_nul)]
