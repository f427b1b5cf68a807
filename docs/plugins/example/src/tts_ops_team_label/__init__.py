"""Example tts-ops plugin (kept under test): a config policy and an event observer."""

from __future__ import annotations

import json
import os

from tts_ops.plugin import hookimpl


@hookimpl
def tts_ops_validate_config(config):
    """Every service must say which team owns it."""
    return [
        f"services[{i}].labels: needs a 'team' label (policy of tts-ops-team-label)"
        for i, svc in enumerate(config.services)
        if "team" not in svc.labels
    ]


@hookimpl
def tts_ops_service_ready(service, status):
    """Append one JSON line per ready service to $TEAM_LABEL_LOG, if set."""
    path = os.environ.get("TEAM_LABEL_LOG")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps({"service": service.name, "team": service.labels.get("team"),
                                 "pid": status.pid}) + "\n")
