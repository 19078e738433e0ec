"""The simulated serverless function: instances with cold starts, keep-alive, limits, GB-s billing.

Each instance serves one request at a time (Lambda's model). A request reuses the most recently
idle warm instance; with none, a new instance cold-starts, if the concurrency limit and the
scale-up rate (a token bucket: `scale_burst` at once, `scale_rate_per_s` after) allow it,
else the request is throttled (dropped, as Lambda answers 429). Idle instances are reaped after
`keep_alive_s`.

A policy may ask for `n` instances kept warm (`keep_warm`), the way Lambda "warmers" do it:
missing instances are started by a warm-up invocation (a cold start, billed like any: INIT when
`bill_cold_start`, the minimum duration and the request fee), and an idle instance of the warm
set is pinged (one invocation of the minimum billed duration plus the fee) before half its
keep-alive has passed, so it is not reaped. A ping holds its instance for `warm_ping_s` (so N
concurrent pings reach N distinct instances) and is billed for it. Requests use warm instances
like any idle one.
"""

from __future__ import annotations

import heapq
from collections import deque

import numpy as np

from libra.core.billing import serverless_cost_usd
from simulator.config import ServerlessConfig


class ServerlessPool:
    """Instances of one function; call `dispatch` with non-decreasing arrival times."""

    def __init__(self, cfg: ServerlessConfig) -> None:
        self.cfg = cfg
        self.busy_until: list[float] = []  # heap of busy instances' finish times
        self.idle_since: deque[float] = deque()  # idle instances, oldest first
        self.tokens = float(cfg.scale_burst)
        self.tokens_at_s = 0.0
        self.billed_s: list[float] = []  # durations not yet folded into the totals below
        self.billed_granules = 0  # an integer: the bill must not depend on how dispatches batch
        self.invocations = 0
        self.cold_starts = 0
        self.throttled = 0
        self.reaped = 0
        self.warm_invocations = 0  # warm-up starts and keep-warm pings (billed, not requests)

    def release(self, now_s: float) -> None:
        """Move finished instances to idle and reap the ones idle past keep-alive."""
        busy, idle = self.busy_until, self.idle_since
        while busy and busy[0] <= now_s:
            idle.append(heapq.heappop(busy))
        horizon = now_s - self.cfg.keep_alive_s
        while idle and idle[0] < horizon:
            idle.popleft()
            self.reaped += 1

    def dispatch(self, now_s: float, service_s: float) -> float | None:
        """Serve one request arriving at `now_s`; its latency, or None when throttled."""
        self.release(now_s)
        cfg = self.cfg
        if self.idle_since:
            self.idle_since.pop()
            latency = cfg.invoke_overhead_s + service_s
            self.billed_s.append(service_s)
        else:
            if len(self.busy_until) >= cfg.concurrency_limit or not self._take_token(now_s):
                self.throttled += 1
                return None
            self.cold_starts += 1
            latency = cfg.invoke_overhead_s + cfg.cold_start_s + service_s
            self.billed_s.append(service_s + (cfg.cold_start_s if cfg.bill_cold_start else 0.0))
        heapq.heappush(self.busy_until, now_s + latency)
        return latency

    def dispatch_many(self, times_s: list[float], services_s: list[float],
                      latency: list[float], route: list[int]) -> None:
        """`dispatch` for consecutive requests that all go to serverless (fills latency/route).

        The same steps as `dispatch`, one loop with its lookups hoisted: the serverless-only
        policy sends millions of requests here.
        """
        cfg = self.cfg
        busy, idle, billed = self.busy_until, self.idle_since, self.billed_s
        heappop, heappush = heapq.heappop, heapq.heappush
        keep_alive_s, overhead_s = cfg.keep_alive_s, cfg.invoke_overhead_s
        for i, now_s in enumerate(times_s):
            while busy and busy[0] <= now_s:
                idle.append(heappop(busy))
            horizon = now_s - keep_alive_s
            while idle and idle[0] < horizon:
                idle.popleft()
                self.reaped += 1
            service_s = services_s[i]
            if idle:
                idle.pop()
                billed.append(service_s)
                heappush(busy, now_s + overhead_s + service_s)
                latency[i] = overhead_s + service_s
                route[i] = 1
            else:
                served = self.dispatch(now_s, service_s)
                if served is not None:
                    latency[i] = served
                    route[i] = 1

    def keep_warm(self, now_s: float, target: int) -> None:
        """Keep `target` instances (busy or idle) alive: ping idle ones, start missing ones."""
        if target <= 0:
            return
        self.release(now_s)
        cfg, idle = self.cfg, self.idle_since
        # the newest `keep` idle instances belong to the warm set; older ones may expire
        keep = max(0, target - len(self.busy_until))
        horizon_s = now_s - cfg.keep_alive_s / 2.0
        stale = 0
        while stale < len(idle) and idle[stale] < horizon_s:
            stale += 1
        expiring = max(0, len(idle) - keep)  # leftmost: not in the warm set
        refresh = stale - expiring
        if refresh > 0:
            old = [idle.popleft() for _ in range(stale)]
            for idle_s in reversed(old[:expiring]):
                idle.appendleft(idle_s)
            ping_s = max(cfg.warm_ping_s, cfg.billing_granularity_s)
            for _ in range(refresh):  # busy for the ping, idle (and warm) again after it
                heapq.heappush(self.busy_until, now_s + cfg.invoke_overhead_s + ping_s)
                self.billed_s.append(ping_s)
            self.warm_invocations += refresh
        missing = target - len(self.busy_until) - len(idle)
        init_s = cfg.cold_start_s if cfg.bill_cold_start else 0.0
        while missing > 0 and len(self.busy_until) < cfg.concurrency_limit and \
                self._take_token(now_s):
            heapq.heappush(self.busy_until, now_s + cfg.invoke_overhead_s + cfg.cold_start_s)
            self.billed_s.append(init_s + cfg.billing_granularity_s)
            self.warm_invocations += 1
            missing -= 1

    def next_keep_warm_s(self, now_s: float, target: int) -> float:
        """A time before which `keep_warm(t, target)` does nothing but `release(t)`, if it was
        just called at `now_s` and only requests come in between (`now_s` itself: something is
        missing). Only a ping starts anything then, and the first ping is due when the warm set's
        oldest instance has been idle half its keep-alive; requests never make that instance
        older (they take the newest idle, and return as the newest) and an instance that joins
        later is idle from after `now_s`. The simulator sleeps through the ticks before it."""
        self.release(now_s)
        busy, idle = len(self.busy_until), len(self.idle_since)
        if busy + idle < target:
            return now_s
        keep = target - busy
        oldest_s = min(self.idle_since[idle - keep], now_s) if keep > 0 else now_s
        return oldest_s + self.cfg.keep_alive_s / 2.0 - 1e-6

    def _take_token(self, now_s: float) -> bool:
        cfg = self.cfg
        self.tokens = min(
            float(cfg.scale_burst), self.tokens + (now_s - self.tokens_at_s) * cfg.scale_rate_per_s
        )
        self.tokens_at_s = now_s
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def in_flight(self, now_s: float) -> int:
        self.release(now_s)
        return len(self.busy_until)

    def instances(self, now_s: float) -> int:
        self.release(now_s)
        return len(self.busy_until) + len(self.idle_since)

    def fold_billing(self) -> None:
        """Round each pending duration up to the billing granularity and add it to the totals
        (vectorised `libra.core.billing.granules`; a test proves the two equal)."""
        if self.billed_s:
            gran = self.cfg.billing_granularity_s
            ticks = np.ceil(np.asarray(self.billed_s) / gran - 1e-9)
            self.billed_granules += int(ticks.sum())
            self.invocations += len(self.billed_s)
            self.billed_s.clear()

    def cost_usd(self) -> float:
        """GB-s of billed duration (rounded up per invocation) plus the per-request fee
        (`libra.core.billing`, the live meter's formula)."""
        self.fold_billing()
        return serverless_cost_usd(self.billed_granules, self.invocations, self.cfg)
