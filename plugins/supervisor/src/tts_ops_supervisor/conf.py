"""Finding supervisord's config: where it listens, its credentials, its include directory.

Credentials come from the config's ``[supervisorctl]`` section or from
``TTS_OPS_SUPERVISOR_USER`` / ``TTS_OPS_SUPERVISOR_PASSWORD``; they are never printed.
"""

from __future__ import annotations

import configparser
import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

from tts_ops.plugin import ConfigError

# supervisorctl's own search order, minus the paths relative to its executable
DEFAULT_LOCATIONS = ("./supervisord.conf", "./etc/supervisord.conf", "/etc/supervisord.conf",
                     "/etc/supervisor/supervisord.conf")


@dataclass
class SupervisorConf:
    path: Path
    serverurl: str
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    include_dir: Path | None = None

    def describe(self) -> str:
        return f"{self.serverurl} (from {self.path})"


def find_conf(explicit: str | None) -> Path:
    candidates = [explicit] if explicit else [os.environ.get("TTS_OPS_SUPERVISOR_CONF"),
                                              *DEFAULT_LOCATIONS]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate).absolute()
    if explicit:
        raise ConfigError(f"--supervisor-conf {explicit}: no such file")
    tried = ", ".join(c for c in candidates if c)
    raise FileNotFoundError(f"no supervisord config found (tried {tried}); pass"
                            " --supervisor-conf FILE or set TTS_OPS_SUPERVISOR_CONF")


def read_conf(path: Path) -> SupervisorConf:
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"))
    try:
        parser.read(path)
    except configparser.Error as exc:
        raise ConfigError(f"{path}: not a valid supervisord config: {exc}") from None
    here = str(path.parent)

    def get(section: str, key: str) -> str | None:
        if parser.has_option(section, key):
            return parser.get(section, key).replace("%(here)s", here)
        return None

    url = get("supervisorctl", "serverurl")
    if not url:
        sock = get("unix_http_server", "file")
        port = get("inet_http_server", "port")
        if sock:
            url = f"unix://{sock}"
        elif port:
            url = f"http://{port if ':' in port else '127.0.0.1:' + port}"
        else:
            raise ConfigError(f"{path}: no [unix_http_server] or [inet_http_server] section:"
                              " supervisord has no control socket to talk to")
    username = os.environ.get("TTS_OPS_SUPERVISOR_USER") or get("supervisorctl", "username") or \
        get("unix_http_server", "username") or get("inet_http_server", "username")
    password = os.environ.get("TTS_OPS_SUPERVISOR_PASSWORD") or get(
        "supervisorctl", "password") or get("unix_http_server", "password") or get(
        "inet_http_server", "password")
    include_dir = None
    files = get("include", "files")
    if files:
        first = files.split()[0]
        pattern = first if os.path.isabs(first) else os.path.join(here, first)
        include_dir = Path(os.path.dirname(pattern))
        if glob.has_magic(str(include_dir)):
            include_dir = None
    return SupervisorConf(path, url, username, password, include_dir)
