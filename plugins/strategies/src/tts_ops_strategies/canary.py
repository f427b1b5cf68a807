"""canary: start the new release, walk its weight up ``steps``, analysing each step.

Each step needs ``min_samples`` requests to the canary (from its ``/metrics``); its error
rate must stay at or under ``max_error_rate`` and its health check must pass. No data is
inconclusive: the step waits, and aborts at the progress deadline. Every analysis logs the
measured value next to its threshold. An abort sets the canary's weight to 0 and stops it.
"""

from __future__ import annotations

import time

from tts_ops.health import check_service
from tts_ops.plugin import DeployContext, DeployFailed
from tts_ops_strategies.settings import CanarySettings


def _backwards(before: list, after: list) -> bool:
    """Whether any counter is lower than it was (its process started counting again)."""
    return any(a is not None and b is not None and (a[0] < b[0] or a[1] < b[1])
               for a, b in zip(after, before, strict=True))


class Canary:
    name = "canary"
    same_slot = False
    splits_traffic = True  # both releases serve for a while (the address's note says so)
    initial_weight = 0

    def run(self, ctx: DeployContext) -> None:
        s, opts = ctx.settings, ctx.options or CanarySettings()
        try:
            ctx.step("start_canary", lambda: [ctx.start(n) for n in ctx.new])
            ctx.step("verify", lambda: [ctx.verify(n) for n in ctx.new])
            if not ctx.old:
                # nothing serves yet: no traffic to shift and nothing to compare against
                ctx.log("no release is serving: the new one takes all traffic at once")
                ctx.step("switch", ctx.set_weights, {n.name: 100 for n in ctx.new})
                return
            for percent in opts.steps:
                weights = {n.name: percent for n in ctx.new}
                weights |= {o.name: 100 - percent for o in ctx.old}
                ctx.step(f"step_{percent}", self._step, ctx, weights, percent)
        except (DeployFailed, KeyboardInterrupt):
            self.rollback(ctx)
            raise
        if ctx.old:
            ctx.step("drain", ctx.pause, s.drain_seconds)
            ctx.step("stop_old", lambda: [ctx.stop(o) for o in ctx.old])

    def _step(self, ctx: DeployContext, weights: dict[str, int], percent: int) -> None:
        opts = ctx.options or CanarySettings()
        before = [ctx.counters(n, opts.count_paths) for n in ctx.new]
        routed_before = [ctx.router_counters(n) for n in ctx.new]
        ctx.set_weights(weights)
        time.sleep(min(opts.step_pause_seconds, max(0.0, ctx.deadline - time.monotonic())))
        while True:
            after = [ctx.counters(n, opts.count_paths) for n in ctx.new]
            routed_after = [ctx.router_counters(n) for n in ctx.new]
            if _backwards(before, after) or _backwards(routed_before, routed_after):
                # an instance or the router restarted and its counters began again: what
                # was counted is lost, never a (negative) sample that passes
                ctx.log(f"canary at {percent}%: counters went backwards (a restart); the"
                        " step's sample starts again")
                before, routed_before = after, routed_after
                self._wait(ctx, percent, 0, opts)
                continue
            total = sum(a[0] - b[0] for a, b in zip(after, before, strict=True))
            errors = sum(a[1] - b[1] for a, b in zip(after, before, strict=True))
            ctx.progress("samples", step=percent, samples=total, need=opts.min_samples,
                         errors=errors)
            if total >= opts.min_samples:
                break
            self._wait(ctx, percent, total, opts)
        rate = errors / total
        if all(r is not None for r in (*routed_before, *routed_after)):
            # the router's own count: it also sees what the instance never answered
            seen = sum(a[0] - b[0] for a, b in zip(routed_after, routed_before, strict=True))
            failed = sum(a[1] - b[1] for a, b in zip(routed_after, routed_before, strict=True))
            router_rate = failed / seen if seen else 0.0
            ctx.log(f"canary at {percent}%: router counted {seen} requests, {failed} failed"
                    f" (rate {router_rate:.4f})")
            if router_rate > opts.max_error_rate:
                raise DeployFailed(f"canary at {percent}%: the router's error rate"
                                   f" {router_rate:.4f} ({failed}/{seen}) is above max"
                                   f" {opts.max_error_rate:.4f}")
        for n in ctx.new:
            health = check_service(n)
            if not health.ok:
                raise DeployFailed(f"canary at {percent}%: health check failed ({health.detail})")
        verdict = "pass" if rate <= opts.max_error_rate else "FAIL"
        ctx.log(f"canary at {percent}%: error rate {rate:.4f} ({errors}/{total}) vs max"
                f" {opts.max_error_rate:.4f}: {verdict}")
        if rate > opts.max_error_rate:
            raise DeployFailed(f"canary at {percent}%: error rate {rate:.4f} ({errors}/{total})"
                               f" above max {opts.max_error_rate:.4f}")

    @staticmethod
    def _wait(ctx: DeployContext, percent: int, total: int, opts: CanarySettings) -> None:
        if time.monotonic() > ctx.deadline:
            raise DeployFailed(f"canary at {percent}%: inconclusive, {total} requests to"
                               f" {', '.join(opts.count_paths)} reached it (need"
                               f" {opts.min_samples}) before the deadline; only those paths"
                               " count (deploy.canary.count_paths)")
        time.sleep(0.5)  # not ctx.pause: this loop reports the deadline itself

    def rollback(self, ctx: DeployContext) -> None:
        if ctx.started:
            weights = {n.name: 0 for n in ctx.started} | {o.name: 100 for o in ctx.old}
            ctx.set_weights(weights)
        for svc in ctx.started:
            ctx.stop(svc)
