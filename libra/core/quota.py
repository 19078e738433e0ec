"""LIBRA's per-second VM quota: how many requests the VMs may take in the current second.

One rule for both drivers. The bucket refills at each new whole second with the decision's
`vm_quota_rps`; an unspent fraction (< 1) carries into the next second, whole unspent requests
do not (LIBRA's quota is a rate, not a savings account). A token is spent only when a request
is actually routed to a VM: asking whether quota is left costs nothing, so a request that goes
to serverless for another reason (no slot inside the budget) never uses up VM quota.

The simulator's engine inlines `refill` in its per-request loop for speed; a test proves the
inlined copy equals this one.
"""

from __future__ import annotations

from dataclasses import dataclass


def refill(second: int, tokens: float, now_second: int, quota_rps: float) -> tuple[int, float]:
    """The bucket after time reaches `now_second`: (second, tokens)."""
    if now_second == second:
        return second, tokens
    carry = tokens % 1.0 if tokens > 0.0 else 0.0
    return now_second, carry + quota_rps


@dataclass
class QuotaBucket:
    """The live router's bucket; `None` quota means unlimited (see module docs)."""

    second: int = -1
    tokens: float = 0.0

    def left(self, now_s: float, quota_rps: float | None) -> bool:
        """Whether a request arriving at `now_s` may go to a VM under the quota."""
        if quota_rps is None:
            return True
        self.second, self.tokens = refill(self.second, self.tokens, int(now_s), quota_rps)
        return self.tokens >= 1.0

    def spend(self, quota_rps: float | None) -> None:
        """A request was routed to a VM."""
        if quota_rps is not None:
            self.tokens -= 1.0
