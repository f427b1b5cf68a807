"""The service's output (a part of `tts_ops_manual.supervise.Supervisor`): read from its
pipe in large chunks, cut into lines no longer than ``MAX_PARTIAL``, written to the rotating
log file, with drops counted (and said) when the disk refuses them.
"""

from __future__ import annotations

import os
import selectors
import time

MAX_PARTIAL = 64 * 1024
PIPE_SIZE = READ_SIZE = 1 << 20  # the default pipe-max-size: no privilege needed
COALESCE_BELOW = 64 * 1024  # a read smaller than this pauses the pipe for:
COALESCE_SECONDS = 0.002
DROPS_REPORT = 1.0  # seconds between status updates while log lines are being dropped


class OutputPipe:
    """The log pipe; shares the supervisor's state."""

    def handle_pipe(self) -> None:
        assert self.pipe_fd is not None
        try:
            chunk = os.read(self.pipe_fd, READ_SIZE)
        except BlockingIOError:
            return
        if not chunk:
            self.close_pipe()
            return
        self.write_output(chunk)
        if len(chunk) < COALESCE_BELOW:
            # a trickle (a service writing a few hundred bytes at a time): let it gather for
            # a moment instead of waking for each piece; lines appear at most 2 ms later
            self.sel.unregister(self.pipe_fd)
            self.pipe_paused = True
            self.timers["pipe"] = time.monotonic() + COALESCE_SECONDS

    def resume_pipe(self) -> None:
        if self.pipe_paused and self.pipe_fd is not None:
            self.sel.register(self.pipe_fd, selectors.EVENT_READ, "pipe")
        self.pipe_paused = False

    def write_output(self, chunk: bytes) -> None:
        first, last = chunk.find(b"\n"), chunk.rfind(b"\n")
        if first < 0 or len(self.partial) + first > MAX_PARTIAL or (
                len(chunk) - last - 1 > MAX_PARTIAL) or (
                last - first > MAX_PARTIAL and has_long_line(chunk, MAX_PARTIAL, first + 1,
                                                             last + 1)):
            self.write_output_joined(chunk)
            return
        # the usual read: written from the chunk itself, never a copy of it (a fresh MiB
        # costs more in page faults than its write); only the line the last read left
        # unfinished is joined to its end
        if self.partial:
            self.log.write_lines(self.partial + chunk[: first + 1])
            self.log.write_lines(chunk, first + 1, last + 1)
        else:
            self.log.write_lines(chunk, 0, last + 1)
        self.partial = chunk[last + 1 :]
        self.note_drops()
        self.schedule_compress()

    def write_output_joined(self, chunk: bytes) -> None:
        """The general case: an unfinished line, or lines over MAX_PARTIAL to cut."""
        data = self.partial + chunk
        cut = data.rfind(b"\n") + 1
        whole, self.partial = data[:cut], data[cut:]
        if len(self.partial) > MAX_PARTIAL or (
                len(whole) > MAX_PARTIAL and has_long_line(whole)):
            whole, self.partial = cut_long_lines(whole, self.partial)
        if whole:
            self.log.write_lines(whole)
            self.note_drops()
            self.schedule_compress()

    def schedule_compress(self) -> None:
        if self.log.compress_due is not None and "compress" not in self.timers:
            self.timers["compress"] = self.log.compress_due

    def note_drops(self) -> None:
        """Say in the status, at most once a second, that log lines are being lost."""
        if self.log.dropped != self.status.get("log_dropped", 0) and \
                "drops" not in self.timers:
            self.timers["drops"] = time.monotonic() + (0 if not self.status.get(
                "log_dropped") else DROPS_REPORT)

    def close_pipe(self) -> None:
        if self.pipe_fd is None:
            return
        while True:  # drain what is left
            try:
                chunk = os.read(self.pipe_fd, READ_SIZE)
            except OSError:
                break
            if not chunk:
                break
            self.write_output(chunk)
        if self.partial:
            self.log.write_lines(self.partial + b"\n")
            self.partial = b""
        if not self.pipe_paused:
            self.sel.unregister(self.pipe_fd)
        self.pipe_paused = False
        self.timers.pop("pipe", None)
        os.close(self.pipe_fd)
        self.pipe_fd = None


def has_long_line(data: bytes, limit: int = MAX_PARTIAL, start: int = 0,
                  end: int | None = None) -> bool:
    """Whether a line of ``data[start:end]`` is longer than ``limit`` bytes (its newline
    aside).

    One ``rfind`` per ``limit`` bytes, from each line end to the last newline within
    reach: a regex for the same (``[^\\n]{limit+1}``) scanned every byte and cost 20 ms a
    MiB, most of the capture's time with a fast writer. A property test holds the two equal.
    """
    end = len(data) if end is None else end
    while end - start > limit:
        newline = data.rfind(b"\n", start, start + limit + 1)
        if newline < 0:
            return True
        start = newline + 1
    return False


def cut_long_lines(whole: bytes, partial: bytes) -> tuple[bytes, bytes]:
    """Lines over MAX_PARTIAL cut into MAX_PARTIAL pieces, each a line of its own, at the
    same places whatever the reads were; an unfinished line keeps its last piece."""
    out = []
    for line in whole.split(b"\n")[:-1]:
        for start in range(0, max(len(line), 1), MAX_PARTIAL):
            out.append(line[start:start + MAX_PARTIAL])
    while len(partial) > MAX_PARTIAL:
        out.append(partial[:MAX_PARTIAL])
        partial = partial[MAX_PARTIAL:]
    return (b"\n".join(out) + b"\n") if out else b"", partial
