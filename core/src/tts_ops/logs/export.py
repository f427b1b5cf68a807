"""``tts-ops logs export``: stream records to a JSON array, JSON lines or CSV."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import IO

from tts_ops.logs.records import LogRecord

LEVEL_ORDER = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


def write(records: Iterable[LogRecord], out: IO[str], fmt: str) -> int:
    count = 0
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(["service", "ts", "level", "msg", "fields", "raw"])
        for r in records:
            d = r.to_json()
            writer.writerow([d["service"], d["ts"] or "", d["level"] or "", d["msg"] or "",
                             json.dumps(d.get("fields", {})) if d.get("fields") else "",
                             d.get("raw", "")])
            count += 1
        return count
    if fmt == "jsonl":
        for r in records:
            out.write(json.dumps(r.to_json()) + "\n")
            count += 1
        return count
    out.write("[")
    for r in records:
        out.write(("\n" if count == 0 else ",\n") + json.dumps(r.to_json()))
        count += 1
    out.write("\n]\n")
    return count
