"""Loading config files: parse JSON or TOML, validate, report every problem at once.

Each problem is one line: ``FILE: services[0].port: must be 1-65535 (got 70000)``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tts_ops.errors import ConfigError

EMBEDDED = "<embedded default>"
CACHE_KEEP = 20
#: objects and lists nested deeper than this are refused (a config needs about five)
MAX_DEPTH = 32
MAX_LINE = 300  # an error line quotes at most this much of a hostile value


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKey(key)
        obj[key] = value
    return obj


def _depth(data: Any) -> int:
    """How deeply ``data`` nests objects and lists (iterative: no recursion to exhaust)."""
    deepest = 0
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            break
        stack.extend((child, depth + 1) for child in children)
    return deepest


@dataclass
class LoadedConfig:
    config: Any  # TtsOpsConfig, or a ConfigView when it came from the validated cache
    source: str
    path: Path | None
    cache_file: Path | None = None
    from_cache: bool = False

    def remember(self) -> None:
        """Store the validated config so later commands skip validation (best effort)."""
        if self.cache_file is None or self.from_cache:
            return
        from tts_ops.statefile import atomic_write_json, private_dir

        try:
            private_dir(self.cache_file.parent)
            # the config holds env values (secrets): owner only
            atomic_write_json(self.cache_file, self.config.model_dump(mode="json"), mode=0o600)
            old = sorted(self.cache_file.parent.glob("config-*.json"),
                         key=lambda f: f.stat().st_mtime)
            for stale in old[:-CACHE_KEEP]:
                stale.unlink(missing_ok=True)
                # what was checked of it beside (a fleet's hosts: tts_ops.cli.fleet_cmd)
                stale.with_suffix(".hosts-ok").unlink(missing_ok=True)
        except OSError:
            pass


def resolve_config_path(explicit: str | None) -> Path | None:
    """``-c FILE``, else ``$TTS_OPS_CONFIG``, else ``./tts_services.json`` if it exists."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("TTS_OPS_CONFIG")
    if env:
        return Path(env)
    local = Path("tts_services.json")
    return local if local.exists() else None


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such config file; pass -c FILE or set TTS_OPS_CONFIG"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from None


def read_document(path: Path, raw: bytes | None = None) -> dict[str, Any]:
    """Parse a JSON or TOML file into a dict, with line and column on syntax errors."""
    raw = read_bytes(path) if raw is None else raw
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read config: not UTF-8 ({exc.reason})") from None
    try:
        if path.suffix == ".toml":
            import tomllib

            try:
                data: Any = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{path}: invalid TOML: {exc}") from None
        else:
            try:
                data = json.loads(text, object_pairs_hook=_unique_keys)
            except json.JSONDecodeError as exc:
                raise ConfigError(
                    f"{path}: line {exc.lineno} column {exc.colno}: invalid JSON: {exc.msg}"
                ) from None
    except _DuplicateKey as exc:
        raise ConfigError(f"{path}: duplicate key {clip(repr(exc.args[0]))}: a key may appear"
                          " once in each object; keep one") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to read; a config needs at most"
                          f" {MAX_DEPTH} levels") from None
    except ValueError as exc:  # e.g. an integer literal of more than 4300 digits
        raise ConfigError(f"{path}: cannot read config: {clip(str(exc))}") from None
    if _depth(data) > MAX_DEPTH:
        raise ConfigError(f"{path}: nested more than {MAX_DEPTH} levels deep; a config needs"
                          " about five")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be an object (got {type(data).__name__})")
    return data


def validate(model: type, data: dict[str, Any], source: str) -> Any:
    """Validate ``data`` against ``model``; raise one ConfigError listing every problem."""
    from pydantic import ValidationError

    try:
        config = model.model_validate(data)
    except ValidationError as exc:
        problems = [f"{source}: {p}" for p in format_errors(model, exc)]
        raise ConfigError(problems[0], problems=problems) from None
    from tts_ops.config.models import TtsOpsConfig, environment_problems

    if isinstance(config, TtsOpsConfig):
        problems = [f"{source}: {p}" for p in environment_problems(config)]
        if problems:
            raise ConfigError(problems[0], problems=problems)
    return config


def load_config(explicit: str | None = None, *, cache_dir: Path | None = None,
                salt: str = "") -> LoadedConfig:
    """Find, read and validate the services config (the embedded default when none).

    With ``cache_dir``, a config whose exact bytes (with the same tts-ops version and
    validation plugins, named by ``salt``) validated before is read back from the cache
    as a `ConfigView`, without importing pydantic.
    """
    path = resolve_config_path(explicit)
    raw = read_bytes(path) if path is not None else b"<embedded>"
    source = str(path) if path is not None else EMBEDDED
    cache_file = None
    if cache_dir is not None:
        try:  # the built-in module: hashlib would load OpenSSL (~3 ms) on every command
            from _sha256 import sha256
        except ImportError:
            from hashlib import sha256

        from tts_ops import __version__

        key = sha256(b"\0".join([raw, __version__.encode(), salt.encode(),
                                          source.encode(), _models_stamp()])).hexdigest()[:32]
        cache_file = cache_dir / f"config-{key}.json"
        try:
            cached = json.loads(cache_file.read_bytes())
        except (OSError, ValueError):
            cached = None
        if isinstance(cached, dict) and isinstance(cached.get("services"), list):
            from tts_ops.config.service import ConfigView

            return LoadedConfig(ConfigView(cached), source, path, cache_file, from_cache=True)
    from tts_ops.config.models import EMBEDDED_DEFAULT, TtsOpsConfig

    data = EMBEDDED_DEFAULT if path is None else read_document(path, raw)
    return LoadedConfig(validate(TtsOpsConfig, data, source), source, path, cache_file)


def _models_stamp() -> bytes:
    """Changes whenever the config models do (a new release, or an edit in development)."""
    st = (Path(__file__).parent / "models.py").stat()
    return f"{st.st_size}:{st.st_mtime_ns}".encode()


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
        lines.append(clip(f"{where}: {message}" if where else message))
    return lines


def clip(text: str) -> str:
    """One printable line of at most MAX_LINE characters, whatever a hostile value held."""
    from tts_ops.errors import printable

    return printable(text, MAX_LINE)


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
        import difflib  # only for a key that is wrong

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
    if kind == "finite_number":
        return f"must be a finite number (got {got!r})"
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
