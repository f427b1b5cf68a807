"""Log sinks: where a service's records are read from. ``file`` is the core's.

A backend may say which sink holds a service's logs (``log_sink(service)`` returning
``(name, location)``); without it, the ``file`` sink at the service's ``log_file``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tts_ops.logread import follow
from tts_ops.logs.sources import files_for, iter_lines

if TYPE_CHECKING:
    from tts_ops.runtime.core import Runtime


class FileSink:
    """Files written by tts-ops's rotating writer (or anything appending to one file)."""

    name = "file"

    def __init__(self, location: Any) -> None:
        self.path = Path(location)

    def files(self) -> list[Path]:
        return files_for(self.path)

    def live(self) -> Path:
        return self.path

    def lines(self, skip: Callable[[str], None]) -> Iterator[bytes]:
        for _file, line in iter_lines(self.files(), skip):
            yield line

    def follow(self, stop: Callable[[], bool]) -> Iterator[str]:
        yield from follow(self.path, stop=stop)


def sink_for(app: Runtime, service: Any, backend: Any) -> Any:
    from tts_ops.contracts import LogLocator

    if isinstance(backend, LogLocator):
        name, location = backend.log_sink(service)
    else:
        name, location = "file", service.log_path(app.state_dir)
    return app.host.lookup("log_sink", name).factory(location)
