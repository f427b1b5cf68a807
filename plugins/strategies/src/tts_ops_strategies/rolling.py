"""rolling: replace ``batch_size`` instances at a time.

With ``max_unavailable`` (default 0) old instances that may be down before their
replacement is ready, and ``max_surge`` (default 1) extra instances that may run during a
batch. On failure the replaced instances are brought back and the new ones stopped.
"""

from __future__ import annotations

from tts_ops.plugin import DeployContext, DeployFailed
from tts_ops_strategies.settings import RollingSettings


class Rolling:
    name = "rolling"
    same_slot = False
    initial_weight = 0

    def run(self, ctx: DeployContext) -> None:
        s, opts = ctx.settings, ctx.options or RollingSettings()
        olds, news = list(ctx.old), list(ctx.new)
        size = max(1, min(opts.batch_size, opts.max_surge + opts.max_unavailable))
        try:
            for first in range(0, len(news), size):
                batch_new = news[first : first + size]
                batch_old = olds[first : first + size]
                label = f"batch{first // size + 1}"
                down_first = batch_old[: opts.max_unavailable]
                if down_first:
                    ctx.set_weights({o.name: 0 for o in down_first})
                    ctx.step(f"{label}_stop", lambda b=down_first: [self._retire(ctx, o)
                                                                     for o in b])
                ctx.step(f"{label}_start", lambda b=batch_new: [ctx.start(n) for n in b])
                ctx.step(f"{label}_verify", lambda b=batch_new: [ctx.verify(n) for n in b])
                rest = [o for o in batch_old if o not in down_first]
                ctx.step(f"{label}_switch", ctx.set_weights,
                         {n.name: 100 for n in batch_new} | {o.name: 0 for o in rest})
                if rest:
                    ctx.step(f"{label}_drain", ctx.pause, s.drain_seconds)
                    ctx.step(f"{label}_stop", lambda b=rest: [self._retire(ctx, o) for o in b])
            leftovers = olds[len(news):]
            if leftovers:
                ctx.set_weights({o.name: 0 for o in leftovers})
                ctx.step("stop_rest", lambda: [self._retire(ctx, o) for o in leftovers])
        except (DeployFailed, KeyboardInterrupt):
            self.rollback(ctx)
            raise

    def _retire(self, ctx: DeployContext, svc) -> None:
        ctx.stop(svc)
        ctx.stopped.append(svc)

    def rollback(self, ctx: DeployContext) -> None:
        for svc in ctx.stopped:
            try:
                ctx.bring_back(svc)
            except Exception as exc:
                ctx.log(f"could not bring back {svc.name}: {exc}")
        if ctx.old:
            ctx.set_weights({s.name: 100 for s in ctx.old} | {s.name: 0 for s in ctx.started})
        for svc in ctx.started:
            ctx.stop(svc)
