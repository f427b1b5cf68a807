"""supervisor: ``tts-ops status --json`` for 20 programs against ``supervisorctl status``."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from bench.common import Result, Supervisord, clean_env, median_run, tts_ops

N = 20


def supervisor(quick: bool) -> list[Result]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-supervisor-"))
    services = [{"name": f"p{i:02d}", "command": ["sleep", "1000000"], "health_check": "none",
                 "start_seconds": 0, "process_manager": "supervisor"} for i in range(N)]
    cfg = tmp / "services.json"
    cfg.write_text(json.dumps({"services": services}))
    sup = Supervisord()
    sup.start()
    try:
        env = clean_env(TTS_OPS_STATE_DIR=str(tmp / "state"), TTS_OPS_CONFIG=str(cfg),
                        TTS_OPS_SUPERVISOR_CONF=str(sup.conf))
        subprocess.run(tts_ops("start", "--all"), env=env, check=True, capture_output=True)
        repeat = 5 if quick else 15
        ours = median_run(tts_ops("status", "--json", "--process-manager", "supervisor"),
                          repeat, env=env)
        theirs = median_run(sup.ctl("status"), repeat)
    finally:
        sup.stop()
    r = Result("supervisor: status --json of 20 programs", ours * 1000, "ms", theirs * 1000,
               "supervisorctl status (same 20 programs)", "ratio <= 1.2")
    r.ok = r.ratio <= 1.2
    return [r]
