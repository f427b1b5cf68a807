"""Rendering a ``[program:]`` section with supervisor's quoting rules.

supervisord reads the file with ``RawConfigParser(inline_comment_prefixes=(";", "#"))``,
so whitespace followed by ``;`` or ``#`` ends a value; then

* ``command`` is split by supervisor with POSIX shlex: each argument is shell-quoted, and
  a quoted argument holding `` ;`` or `` #`` is split into adjacent quoted pieces (``'x '';y'``)
  so that no whitespace stands right before the comment character;
* every value goes through Python ``%`` interpolation: ``%`` is doubled (in
  ``stdout_logfile``, which supervisord expands twice, doubled twice);
* ``environment`` is parsed with non-POSIX shlex, which strips quotes but knows no
  escapes: a value is wrapped in the quote it does not contain; one holding both quote
  characters, starting or ending with a quote, or holding `` ;``/`` #``, is refused;
* nothing with a control character reaches the file (defence in depth: the config layer
  refuses them first).
"""

from __future__ import annotations

import math
import re
import shlex
import sys
from typing import Any

from tts_ops.plugin import ConfigError

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_COMMENT = re.compile(r"\s[;#]")


def program_name(service: Any) -> str:
    return f"tts-ops-{service.name}"


def keeper_name(service: Any) -> str:
    """``tts-ops_beat-NAME``: no service's own program can be named so (the ``_``)."""
    return f"tts-ops_beat-{service.name}"


def render_keeper(service: Any, argv: list[str], log_file: str, user: str | None = None
                  ) -> str:
    """The program of the service's heartbeat keeper (`tts_ops.discovery.keeper`), started
    by tts-ops once the service is ready and stopped before it. ``user``: who it runs as
    (the user of tts-ops, whose registry and state dir it writes), when not supervisord's
    own."""
    name = keeper_name(service)
    return "\n".join([
        "; Written by tts-ops: heartbeats of a service in discovery, while it runs.",
        f"[program:{name}]",
        "command=" + " ".join(_arg(a) for a in argv),
        *([f"user={_plain(user, 'user')}"] if user else []),
        "autostart=false",
        "autorestart=true",
        "startsecs=1",
        "startretries=1000",
        "stopsignal=TERM",
        "stopwaitsecs=5",
        "redirect_stderr=true",
        f"stdout_logfile={_log_path(log_file)}",
        "stdout_logfile_maxbytes=1048576",
        "stdout_logfile_backups=1",
        ""])


def _pct(value: str) -> str:
    return value.replace("%", "%%")


def _checked(value: str, what: str) -> str:
    if _CONTROL.search(value):
        raise ConfigError(f"{what}: control characters (newlines, tabs) cannot go into a"
                          " supervisor program")
    return value


def _plain(value: str, what: str) -> str:
    """A value written as it is (a path, a user): no comment marker, no outer spaces."""
    _checked(value, what)
    if _COMMENT.search(value) or value != value.strip():
        raise ConfigError(f"{what}: {value!r} has a space before ; or #, or at an end, which"
                          " supervisord would cut off; choose a value without them")
    return _pct(value)


def _log_path(value: str) -> str:
    """stdout_logfile: supervisord %-expands it twice (when reading, then as a log name)."""
    return _pct(_plain(value, "log_file"))


def _arg(value: str) -> str:
    """One command argument, quoted for POSIX shlex and safe from inline comments."""
    _checked(value, "command")
    quoted = shlex.quote(value)
    # inside '...', closing and reopening the quote ('') splits nothing for shlex but puts
    # a quote between the whitespace and the comment character configparser looks for
    quoted = _COMMENT.sub(lambda m: m.group()[0] + "''" + m.group()[1], quoted)
    return _pct(quoted)


def _env_value(key: str, value: str) -> str:
    what = f"env.{key}"
    _checked(value, what)
    if _COMMENT.search(value):
        raise ConfigError(f"{what}: supervisord cuts a value at a space followed by ; or #;"
                          " drop the space or use another backend")
    if value and (value[0] in "'\"" or value[-1] in "'\""):
        raise ConfigError(f"{what}: supervisord strips quotes at the ends of a value; a value"
                          " cannot start or end with ' or \"")
    if '"' not in value:
        return f'"{_pct(value)}"'
    if "'" not in value:
        return f"'{_pct(value)}'"
    raise ConfigError(f"{what}: supervisor cannot represent a value holding both ' and \";"
                      " drop one of them")


def startsecs(service: Any) -> int:
    """supervisord's startsecs for a service: at least 2, never 0.

    supervisord notices exits on its 1-second tick, so with startsecs 0 or 1 a command
    that crashes at once can be counted as started, and after that it is respawned
    without limit (startretries only covers failed starts).
    """
    return max(2, math.ceil(service.start_seconds))


def render(service: Any, log_file: str, autostart: bool = False, python: str | None = None,
           state_dir: str | None = None) -> str:
    """The program section. A service with a shared address (``socket: inherit``) runs
    through `tts_ops.sockets.activate`, which hands it the socket and execs it: supervisord
    cannot pass one socket to two programs (blue and green), a holder process can."""
    argv = service.argv(python or sys.executable)
    shared = service.shared_address()
    if shared is not None and state_dir is not None:
        argv = [python or sys.executable, "-m", "tts_ops.sockets.activate", state_dir,
                service.owner, shared[0], str(shared[1]), *argv]
    name = program_name(service)
    instances = service.instances
    if instances > 1 and service.uses_reference_server:
        argv[argv.index("--port") + 1] = "TTSOPSPORT"
    command = " ".join(_arg(a) for a in argv).replace("TTSOPSPORT", "%(process_num)d")
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
        f"stdout_logfile={_log_path(log_file)}",
        f"stdout_logfile_maxbytes={service.log_max_bytes}",
        f"stdout_logfile_backups={service.log_backups}",
    ]
    if instances > 1:
        lines += [f"numprocs={instances}", f"numprocs_start={service.port}",
                  "process_name=%(program_name)s-%(process_num)d"]
        base, dot, ext = log_file.rpartition(".")
        lines[lines.index(f"stdout_logfile={_log_path(log_file)}")] = (
            f"stdout_logfile={_log_path(base)}-%(process_num)d.{_log_path(ext)}" if dot
            else f"stdout_logfile={_log_path(log_file)}-%(process_num)d")
    if service.working_dir:
        lines.append(f"directory={_plain(str(service.working_dir), 'working_dir')}")
    if service.user:
        lines.append(f"user={_plain(service.user, 'user')}")
    env = dict(service.env)
    if env or instances > 1:
        parts = [f"{k}={_env_value(k, v)}" for k, v in sorted(env.items())]
        if instances > 1:
            parts.append("TTS_OPS_INSTANCE=%(process_num)d")
        lines.append("environment=" + ",".join(parts))
    return "\n".join(lines) + "\n"
