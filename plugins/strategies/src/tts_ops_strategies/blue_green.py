"""blue_green: start the new release in the idle slot, verify, switch weights, drain, stop old.

Any failure before the switch stops the new slot and leaves the old one untouched.
"""

from __future__ import annotations

from tts_ops.plugin import DeployContext, DeployFailed


class BlueGreen:
    name = "blue_green"
    same_slot = False
    initial_weight = 0  # registered when ready, but no traffic before the switch

    def run(self, ctx: DeployContext) -> None:
        switched = False
        try:
            ctx.step("start_new", lambda: [ctx.start(s) for s in ctx.new])
            ctx.step("verify", lambda: [ctx.verify(s) for s in ctx.new])
            weights = {s.name: 100 for s in ctx.new} | {s.name: 0 for s in ctx.old}
            switched = True  # from its first weight on: a rollback gives the old ones theirs
            ctx.step("switch", ctx.set_weights, weights)
        except (DeployFailed, KeyboardInterrupt):
            self.rollback(ctx, switched)
            raise
        if ctx.old:
            ctx.step("drain", ctx.pause, ctx.settings.drain_seconds)
            ctx.step("stop_old", lambda: [ctx.stop(s) for s in ctx.old])

    def rollback(self, ctx: DeployContext, switched: bool = True) -> None:
        if switched and ctx.old:
            ctx.set_weights({s.name: 100 for s in ctx.old} | {s.name: 0 for s in ctx.started})
        for svc in ctx.started:
            ctx.stop(svc)
