"""The core's built-in plugin: what tts-ops provides without any plugin installed.

* the ``file`` registry: discovery records in one SQLite file (WAL mode);
* the ``file`` log sink: rotated (and gzipped) log files.
"""

from __future__ import annotations

from tts_ops.hookspecs import hookimpl


def _file_registry(location):
    from tts_ops.discovery.store import SqliteStore  # imported only when used

    return SqliteStore(location)


@hookimpl
def tts_ops_register_registries(register) -> None:
    register.add("file", _file_registry)


def _file_sink(location):
    from tts_ops.logs.sinks import FileSink

    return FileSink(location)


@hookimpl
def tts_ops_register_log_sinks(register) -> None:
    register.add("file", _file_sink)
