"""Rendering a ``[program:]`` section with supervisor's quoting rules.

* ``command`` is split by supervisor with POSIX shlex: each argument is shell-quoted;
* every value goes through Python ``%`` interpolation: ``%`` is doubled;
* ``environment`` is parsed with non-POSIX shlex, which strips quotes but knows no
  escapes: a value is wrapped in the quote it does not contain, and one holding both
  quote characters is refused.
"""

from __future__ import annotations

import math
import shlex
import sys
from typing import Any

from tts_ops.errors import ConfigError


def program_name(service: Any) -> str:
    return f"tts-ops-{service.name}"


def _pct(value: str) -> str:
    return value.replace("%", "%%")


def _env_value(key: str, value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ConfigError(f"env.{key}: newlines cannot go into a supervisor environment")
    if '"' not in value:
        return f'"{_pct(value)}"'
    if "'" not in value:
        return f"'{_pct(value)}'"
    raise ConfigError(f"env.{key}: supervisor cannot represent a value holding both ' and \";"
                      " drop one of them")


def startsecs(service: Any) -> int:
    """supervisord's startsecs for a service: at least 2, never 0.

    supervisord notices exits on its 1-second tick, so with startsecs 0 or 1 a command
    that crashes at once can be counted as started, and after that it is respawned
    without limit (startretries only covers failed starts).
    """
    return max(2, math.ceil(service.start_seconds))


def render(service: Any, log_file: str, autostart: bool = False, python: str | None = None
           ) -> str:
    argv = service.argv(python or sys.executable)
    name = program_name(service)
    instances = service.instances
    if instances > 1 and service.uses_reference_server:
        argv[argv.index("--port") + 1] = "TTSOPSPORT"
    command = " ".join(_pct(shlex.quote(a)) for a in argv).replace("TTSOPSPORT",
                                                                   "%(process_num)d")
    lines = [
        "; Written by tts-ops (tts-ops install NAME --process-manager supervisor).",
        "; Edit the tts-ops config instead: this file is rewritten on install.",
        f"[program:{name}]",
        f"command={command}",
        f"autostart={'true' if autostart else 'false'}",
        "autorestart=unexpected",
        "exitcodes=0",
        f"startsecs={startsecs(service)}",
        f"startretries={service.max_restarts}",
        f"stopsignal={service.stop_signal}",
        f"stopwaitsecs={max(1, math.ceil(service.stop_timeout))}",
        "stopasgroup=true",
        "killasgroup=true",
        "redirect_stderr=true",
        f"stdout_logfile={_pct(log_file)}",
        f"stdout_logfile_maxbytes={service.log_max_bytes}",
        f"stdout_logfile_backups={service.log_backups}",
    ]
    if instances > 1:
        lines += [f"numprocs={instances}", f"numprocs_start={service.port}",
                  "process_name=%(program_name)s-%(process_num)d"]
        base, dot, ext = log_file.rpartition(".")
        lines[lines.index(f"stdout_logfile={_pct(log_file)}")] = (
            f"stdout_logfile={_pct(base)}-%(process_num)d.{_pct(ext)}" if dot
            else f"stdout_logfile={_pct(log_file)}-%(process_num)d")
    if service.working_dir:
        lines.append(f"directory={_pct(str(service.working_dir))}")
    if service.user:
        lines.append(f"user={_pct(service.user)}")
    env = dict(service.env)
    if env or instances > 1:
        parts = [f"{k}={_env_value(k, v)}" for k, v in sorted(env.items())]
        if instances > 1:
            parts.append("TTS_OPS_INSTANCE=%(process_num)d")
        lines.append("environment=" + ",".join(parts))
    return "\n".join(lines) + "\n"
