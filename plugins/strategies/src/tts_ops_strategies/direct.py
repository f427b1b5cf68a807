"""direct: stop the old instance, start the new one, verify; report the downtime.

On failure the old release is started again.
"""

from __future__ import annotations

import time

from tts_ops.plugin import DeployContext, DeployFailed


class Direct:
    name = "direct"
    same_slot = True  # the new release takes the old one's place (and port)
    initial_weight = 100

    def run(self, ctx: DeployContext) -> None:
        began = time.monotonic()
        try:
            if ctx.old:
                ctx.step("stop_old", lambda: [ctx.stop(s) for s in ctx.old])
                ctx.stopped.extend(ctx.old)
            ctx.step("start_new", lambda: [ctx.start(s) for s in ctx.new])
            ctx.step("verify", lambda: [ctx.verify(s) for s in ctx.new])
        except DeployFailed:
            self.rollback(ctx)
            raise
        ctx.downtime_s = round(time.monotonic() - began, 3) if ctx.old else None
        if ctx.downtime_s is not None and ctx.service.shared_address() is not None:
            ctx.log(f"no process accepted for {ctx.downtime_s:.2f}s: the address stayed open"
                    " and connections waited (direct stops before it starts)")
        elif ctx.downtime_s is not None:
            ctx.log(f"downtime: {ctx.downtime_s:.2f}s (direct stops before it starts)")

    def rollback(self, ctx: DeployContext) -> None:
        for svc in ctx.started:
            ctx.stop(svc)
        for svc in ctx.stopped:
            try:
                ctx.bring_back(svc, 100)
                ctx.log(f"restarted the previous release as {svc.name}")
            except Exception as exc:  # report, keep restoring the rest
                ctx.log(f"could not restart {svc.name}: {exc}")
