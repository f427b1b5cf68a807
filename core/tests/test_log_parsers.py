"""``logs stats``' fast path counts a line exactly as the one parser (json.loads, then
`tts_ops.logs.records.parse`) does: hypothesis writes the lines, the reference server's way
(its own formatter, hostile values in every field), other JSON and any bytes, and both
paths must agree on every count."""

from __future__ import annotations

import json
import logging

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tts_ops.logs.stats import ServiceStats, accumulate, consume

_TS = st.integers(min_value=0, max_value=253402300799999).map(lambda ms: ms / 1000)
# mostly printable ASCII (the server's usual lines, which take the fast path), some anything
_TEXT = st.one_of(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
                  st.text(max_size=30))
_LEVELS = st.one_of(st.sampled_from(["DEBUG", "INFO", "WARNING"]), st.sampled_from(
    ["ERROR", "CRITICAL", "WARN", "info", "", "ERR", "x\"y", "é", "IN\\FO"]))
_NUMBERS = st.one_of(st.integers(min_value=-10, max_value=10**12),
                     st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                     st.none(), _TEXT)


@st.composite
def server_lines(draw) -> bytes:
    """What tts-server's JsonFormatter writes, with hostile values in every field."""
    from tts_server.logs import JsonFormatter

    record = logging.makeLogRecord({
        "created": draw(_TS), "levelname": draw(_LEVELS), "name": draw(_TEXT),
        "msg": draw(_TEXT), "args": None})
    record.msecs = int(record.created * 1000) % 1000
    if draw(st.booleans()):
        record.synth_ms = draw(_NUMBERS)
    if draw(st.booleans()):
        record.event = draw(st.sampled_from(["request", "requests", "start", None]))
    for key, value in draw(st.dictionaries(st.sampled_from(
            ["status", "path", "extra", "synth_ms_other", "nested"]), st.one_of(
            _NUMBERS, _NUMBERS, st.dictionaries(_TEXT, _NUMBERS, max_size=2)),
            max_size=3)).items():
        setattr(record, key, value)
    return JsonFormatter().format(record).encode() + b"\n"


_OTHER = st.one_of(
    st.binary(max_size=60),
    st.builds(lambda d: json.dumps(d).encode() + b"\n",
              st.dictionaries(st.sampled_from(["ts", "level", "msg", "synth_ms", "event",
                                               "time", "levelname"]),
                              st.one_of(_NUMBERS, _LEVELS), max_size=5)),
    # duplicate keys, which json.loads reads as the last one
    st.builds(lambda a, b: (b'{"ts": "2026-01-02T03:04:05.678Z", "level": "%s", "msg": "m",'
                            b' "level": "%s"}\n' % (a.encode(), b.encode())), _LEVELS, _LEVELS),
)


def _slow(lines: list[bytes], since: str | None, until: str | None) -> dict:
    stats = ServiceStats("svc")
    for line in lines:
        accumulate(stats, line, since, until)
    return stats.to_json()


def _fast(lines: list[bytes], since: str | None, until: str | None) -> dict:
    stats = ServiceStats("svc")
    consume(stats, iter(lines), since, until)
    return stats.to_json()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(server_lines(), _OTHER), max_size=12),
       st.one_of(st.none(), st.sampled_from(["1970-01-01T00:00:00.000Z",
                                             "2000-06-01T12:00:00.500Z"])),
       st.one_of(st.none(), st.sampled_from(["2100-01-01T00:00:00.000Z",
                                             "2000-06-01T12:00:00.500Z"])))
# found by hypothesis: json.dumps writes Infinity; in a field stats never reads, both paths
# count the line (the parser is lenient there for stats)
@example([b'{"ts": "1970-01-01T00:00:00.000Z", "level": "DEBUG", "logger": "", "msg": "",'
          b' "status": Infinity}\n'], None, None)
def test_stats_fast_path_counts_what_the_full_parser_counts(lines, since, until):
    assert _fast(lines, since, until) == _slow(lines, since, until)


def test_files_read_by_several_workers_count_what_one_reader_counts(tmp_path, monkeypatch):
    import gzip

    from tts_ops.logs import stats as stats_module
    from tts_ops.logs.stats import consume_files

    lines = [(f'{{"ts": "2026-11-27T10:{i // 60 % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z",'
              f' "level": "{"ERROR" if i % 7 == 0 else "INFO"}", "logger": "l",'
              f' "msg": "m{i % 3}", "event": "request", "synth_ms": {i % 50}}}\n').encode()
             for i in range(3000)]
    files = [tmp_path / "a.log.1.gz", tmp_path / "a.log.2", tmp_path / "a.log"]
    with gzip.open(files[0], "wb") as fh:
        fh.writelines(lines[:1000])
    files[1].write_bytes(b"".join(lines[1000:2000]) + b"plain text line\n")
    files[2].write_bytes(b"".join(lines[2000:]))
    one = ServiceStats("svc")
    consume_files(one, files, None, None, lambda m: None)  # small: one reader
    monkeypatch.setattr(stats_module, "PARALLEL_BYTES", 0)
    several, skipped = ServiceStats("svc"), []
    consume_files(several, [*files, tmp_path / "gone.log"], None, None, skipped.append)
    assert several.to_json() == one.to_json()
    assert one.lines == 3001 and one.requests == 3000
    assert len(skipped) == 1 and "gone.log" in skipped[0]
