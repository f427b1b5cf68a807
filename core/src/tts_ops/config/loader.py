"""Loading config files: parse JSON or TOML, validate, report every problem at once.

Each problem is one line: ``FILE: services[0].port: must be 1-65535 (got 70000)``.
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tts_ops.errors import ConfigError

EMBEDDED = "<embedded default>"


@dataclass
class LoadedConfig:
    config: Any  # TtsOpsConfig; typed loosely so that importing this module stays cheap
    source: str
    path: Path | None


def resolve_config_path(explicit: str | None) -> Path | None:
    """``-c FILE``, else ``$TTS_OPS_CONFIG``, else ``./tts_services.json`` if it exists."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("TTS_OPS_CONFIG")
    if env:
        return Path(env)
    local = Path("tts_services.json")
    return local if local.exists() else None


def read_document(path: Path) -> dict[str, Any]:
    """Parse a JSON or TOML file into a dict, with line and column on syntax errors."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such config file; pass -c FILE or set TTS_OPS_CONFIG"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    if path.suffix == ".toml":
        try:
            data: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{path}: line {exc.lineno} column {exc.colno}: invalid JSON: {exc.msg}"
            ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be an object (got {type(data).__name__})")
    return data


def validate(model: type, data: dict[str, Any], source: str) -> Any:
    """Validate ``data`` against ``model``; raise one ConfigError listing every problem."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [f"{source}: {p}" for p in format_errors(model, exc)]
        raise ConfigError(problems[0], problems=problems) from None


def load_config(explicit: str | None = None) -> LoadedConfig:
    """Find, read and validate the services config (the embedded default when none)."""
    from tts_ops.config.models import EMBEDDED_DEFAULT, TtsOpsConfig

    path = resolve_config_path(explicit)
    if path is None:
        return LoadedConfig(validate(TtsOpsConfig, EMBEDDED_DEFAULT, EMBEDDED), EMBEDDED, None)
    data = read_document(path)
    return LoadedConfig(validate(TtsOpsConfig, data, str(path)), str(path), path)


def load_orchestration(path: str) -> Any:
    from tts_ops.config.models import OrchestrationConfig

    return validate(OrchestrationConfig, read_document(Path(path)), path)


# --- turning pydantic errors into one line each ---------------------------


def format_errors(model: type, exc: Any) -> list[str]:
    lines = []
    for err in exc.errors(include_url=False):
        loc = [p for p in err["loc"] if not _is_type_tag(p)]
        where = _dotted(loc)
        message = _message(model, loc, err)
        lines.append(f"{where}: {message}" if where else message)
    return lines


def _is_type_tag(part: Any) -> bool:
    # pydantic adds tags such as 'function-after[...]' or 'str' for unions
    return isinstance(part, str) and ("[" in part or part in {"str", "int", "float", "bool"})


def _dotted(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _message(model: type, loc: list[Any], err: dict[str, Any]) -> str:
    kind = err["type"]
    got = err.get("input")
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        fields = _fields_at(model, loc[:-1])
        key = str(loc[-1]) if loc else "?"
        close = difflib.get_close_matches(key, fields, n=1, cutoff=0.6)
        if close:
            return f"unknown key; did you mean {close[0]!r}?"
        return f"unknown key; valid keys: {', '.join(sorted(fields))}"
    if kind == "missing":
        return "required field is missing"
    if kind in ("greater_than_equal", "greater_than"):
        return f"must be >= {ctx.get('ge', ctx.get('gt'))} (got {got!r})"
    if kind in ("less_than_equal", "less_than"):
        return f"must be <= {ctx.get('le', ctx.get('lt'))} (got {got!r})"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')} (got {got!r})"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"must be an integer (got {got!r})"
    if kind in ("float_parsing", "float_type"):
        return f"must be a number (got {got!r})"
    if kind in ("bool_parsing", "bool_type"):
        return f"must be true or false (got {got!r})"
    if kind in ("string_type",):
        return f"must be a string (got {got!r})"
    if kind in ("list_type",):
        return f"must be a list (got {got!r})"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be an object (got {got!r})"
    if kind == "too_short":
        return "must not be empty"
    return str(err["msg"])


def _fields_at(model: type, loc: list[Any]) -> list[str]:
    """The field names of the (sub)model that ``loc`` points into."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            break
        current = _model_in(field.annotation)
    return list(getattr(current, "model_fields", {}))


def _model_in(annotation: Any) -> Any:
    if hasattr(annotation, "model_fields"):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
