"""systemd: ``tts-ops status --json`` for 20 units against its floor: a Python program that
imports click (``python -c "import click"``) plus ``systemctl --user show`` of the same
units, both measured in the same run."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import Result, clean_env, median_run, tts_ops

N = 20


def systemd(quick: bool) -> list[Result]:
    from tts_ops_systemd.usermanager import UserManager

    tmp = Path(tempfile.mkdtemp(prefix="bench-systemd-"))
    services = [{"name": f"u{i:02d}", "command": ["sleep", "1000000"], "health_check": "none",
                 "start_seconds": 0, "process_manager": "systemd",
                 "options": {"systemd": {"scope": "user"}}} for i in range(N)]
    cfg = tmp / "services.json"
    cfg.write_text(json.dumps({"services": services}))
    with UserManager():
        env = clean_env(TTS_OPS_STATE_DIR=str(tmp / "state"), TTS_OPS_CONFIG=str(cfg))
        subprocess.run(tts_ops("start", "--all"), env=env, check=True, capture_output=True)
        try:
            repeat = 5 if quick else 15
            ours = median_run(tts_ops("status", "--json"), repeat, env=env)
            units = [f"tts-ops-u{i:02d}.service" for i in range(N)]
            show = median_run(["systemctl", "--user", "show", *units], repeat, env=env)
            click = median_run([sys.executable, "-c", "import click"], repeat, env=env)
        finally:
            subprocess.run(tts_ops("stop", "--all", "--force"), env=env, capture_output=True)
            subprocess.run(tts_ops("uninstall", *[s["name"] for s in services],
                                   "--process-manager", "systemd"), env=env, capture_output=True)
    r = Result("systemd: status --json of 20 units", ours * 1000, "ms", (show + click) * 1000,
               f"floor: python -c 'import click' {click * 1000:.0f} ms + systemctl --user show"
               f" (20 units) {show * 1000:.0f} ms", "ratio <= 1.3")
    r.ok = r.ratio <= 1.3
    return [r]
