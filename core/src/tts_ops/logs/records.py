"""Log records: the one parser of the log tools, for JSON lines (``json.loads``) and plain
text lines (timestamp and level detected in the common formats; what is left is kept as
``raw``, never dropped). The only shortcut, the stats fast path in `tts_ops.logs.stats`,
is held to this parser's answers by a property test.
"""

from __future__ import annotations

import calendar
import json
import math
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL", "ERR": "ERROR", "CRIT": "CRITICAL",
            "INFORMATION": "INFO", "NOTICE": "INFO", "TRACE": "DEBUG"}
_TEXT_TS = re.compile(
    r"(?P<iso>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})?)"
    r"|(?P<syslog>[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2})")
_TEXT_LEVEL = re.compile(r"\b(DEBUG|INFO|WARNING|WARN|ERROR|ERR|CRITICAL|CRIT|FATAL|NOTICE|TRACE)"
                         r"\b", re.IGNORECASE)
_second_cache: dict[str, float] = {}
MAX_TS = 253402300799.0  # 9999-12-31T23:59:59Z: the last second an ISO time can name
MAX_MS = 1e9  # a latency field above ~11 days is not a latency


class Malformed(ValueError):
    """A JSON record with a number no log line can mean (NaN, inf, out of range)."""


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise Malformed(text)
    return value


def _no_constant(text: str) -> float:
    raise Malformed(text)  # NaN, Infinity, -Infinity: not JSON, and not a number to count


class _Impossible:
    """A number no log line can mean, marked where a lenient parse met it."""

    __slots__ = ()


IMPOSSIBLE = _Impossible()


def _finite_or_mark(text: str) -> float | _Impossible:
    value = float(text)
    return value if math.isfinite(value) else IMPOSSIBLE


def _mark(text: str) -> _Impossible:
    return IMPOSSIBLE


def plausible_ts(value: float) -> bool:
    return 0 <= value <= MAX_TS


def plausible_ms(value: float) -> bool:
    return 0 <= value <= MAX_MS


@dataclass
class LogRecord:
    service: str
    raw: str
    ts: float | None = None
    level: str | None = None
    msg: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    malformed: bool = False  # a JSON record with an impossible number: count it, skip it

    def to_json(self) -> dict[str, Any]:
        iso = (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.ts))
               + f".{int(self.ts % 1 * 1000):03d}Z") if self.ts is not None else None
        return {"service": self.service, "ts": iso, "level": self.level, "msg": self.msg,
                **({"fields": self.fields} if self.fields else {}),
                **({} if self.msg is not None else {"raw": self.raw})}


def parse_time(text: str) -> float | None:
    """Epoch seconds of an ISO 8601 time (naive = UTC), or None."""
    base = text[:19]
    second = _second_cache.get(base)
    if second is None:
        try:
            dt = datetime.fromisoformat(base.replace(" ", "T"))
        except ValueError:
            return None
        second = float(calendar.timegm(dt.timetuple()))
        if len(_second_cache) > 100_000:
            _second_cache.clear()
        _second_cache[base] = second
    rest = text[19:]
    frac = 0.0
    if rest[:1] in (".", ","):
        digits = ""
        for ch in rest[1:]:
            if not ch.isdigit():
                break
            digits += ch
        rest = rest[1 + len(digits):]
        frac = int(digits) / 10 ** len(digits) if digits else 0.0
    if rest and rest not in ("Z", "z"):
        try:
            sign = 1 if rest[0] == "+" else -1
            hh, mm = int(rest[1:3]), int(rest[-2:])
            second -= sign * (hh * 3600 + mm * 60)
        except (ValueError, IndexError):
            pass
    return second + frac


def _pick(data: dict[str, Any], *names: str) -> Any:
    """The value of the first of ``names`` that is present and not null (taken out)."""
    for name in names:
        if data.get(name) is not None:
            return data.pop(name)
        data.pop(name, None)
    return None


def parse(line: str, service: str, lenient: bool = False) -> LogRecord:
    """One line to a record: JSON by ``json.loads`` (every field), else text.

    An impossible number (NaN, Infinity, 1e999) makes the record malformed. ``lenient``
    (``logs stats``, which counts and never writes a record): only in a field read here,
    the time or ``synth_ms``; anywhere else it is dropped, as the stats fast path never
    reads it. Export stays strict: it writes every field, and JSON has no Infinity.
    """
    if line.startswith("{"):
        try:
            if lenient:
                data = json.loads(line, parse_float=_finite_or_mark, parse_constant=_mark)
            else:
                data = json.loads(line, parse_float=_finite, parse_constant=_no_constant)
        except Malformed:
            return LogRecord(service, line, malformed=True)
        except (ValueError, RecursionError):
            data = None
        if isinstance(data, dict):
            ts = _pick(data, "ts", "time", "timestamp")
            if lenient:
                if ts is IMPOSSIBLE or data.get("synth_ms") is IMPOSSIBLE:
                    return LogRecord(service, line, malformed=True)
                for key in [k for k, v in data.items() if v is IMPOSSIBLE]:
                    data[key] = None
            level = _pick(data, "level", "levelname")
            msg = _pick(data, "msg", "message")
            when = parse_time(ts) if isinstance(ts, str) else None
            if isinstance(ts, int | float) and not isinstance(ts, bool):
                when = float(ts) if abs(ts) <= MAX_TS else MAX_TS * 2  # no float overflow
            synth = data.get("synth_ms")
            if (when is not None and not plausible_ts(when)) or (
                    isinstance(synth, int | float) and not isinstance(synth, bool)
                    and not plausible_ms(synth)):
                return LogRecord(service, line, malformed=True)
            return LogRecord(service, line, when, _level(level) if isinstance(level, str)
                             else None, str(msg) if msg is not None else None, data)
    return parse_text(line, service)


def parse_text(line: str, service: str) -> LogRecord:
    ts = None
    m = _TEXT_TS.search(line, 0, 64)
    if m is not None:
        if m.group("iso"):
            ts = parse_time(m.group("iso"))
        else:
            year = time.gmtime().tm_year
            try:
                ts = calendar.timegm(time.strptime(f"{year} {m.group('syslog')}",
                                                   "%Y %b %d %H:%M:%S"))
            except ValueError:
                ts = None
    lv = _TEXT_LEVEL.search(line, 0, 120)
    level = _level(lv.group(1)) if lv else None
    if ts is None and level is None:
        return LogRecord(service, line)
    return LogRecord(service, line, ts, level, line)


def _level(value: str) -> str:
    up = value.upper()
    return _ALIASES.get(up, up)


def parse_when(text: str, what: str) -> float:
    """A user's time: ISO 8601 ("2024-01-01 00:00:00", naive = local time), epoch seconds,
    or an age ("90s", "15m", "2h", "7d") meaning that long ago."""
    from tts_ops.errors import ConfigError

    value = text.strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd])", value)
    if m:
        return time.time() - float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[
            m.group(2)]
    try:
        return float(value)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{what} {text!r}: not a time; use '2024-01-01 00:00:00', an ISO"
                          " 8601 time, epoch seconds, or an age such as 15m, 2h, 7d") from None
    return dt.timestamp()


def parse_age(text: str, what: str) -> float:
    from tts_ops.errors import ConfigError

    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd])", text.strip())
    if not m:
        raise ConfigError(f"{what} {text!r}: use an age such as 30m, 12h, 7d")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
