"""The per-request routing rule, one function used by the simulator and the live router.

A request goes to a VM when a VM can finish it inside the SLA budget (and the policy's VM quota
for this second is not spent); otherwise to serverless when the policy allows spilling; otherwise
it waits in the VM queue, unless that queue is already longer than the queue timeout, in which case
it is dropped (an SLA violation, but never an unbounded queue).
"""

from __future__ import annotations

import enum

# Float sums of seconds carry ~1e-11 s of rounding noise on long traces: a request that fits the
# budget exactly (a 1 s service under a 1 s SLA) must not be refused for it.
FIT_TOLERANCE_S = 1e-6


class Route(enum.IntEnum):
    """Where one request goes."""

    VM = 0
    SERVERLESS = 1
    DROP = 2


def choose_route(
    *,
    vm_wait_s: float | None,
    expected_service_s: float,
    sla_budget_s: float,
    quota_left: bool,
    spill_to_serverless: bool,
    use_vms: bool,
    queue_timeout_s: float,
    quota_by_count: bool = False,
) -> Route:
    """Pick VM, serverless or drop for one request.

    `vm_wait_s` is how long the request would wait for the earliest free VM slot (None when there
    is no VM at all). The VM path is taken when wait + expected service fits the SLA budget and
    the quota allows it; VM-only policies (no spilling) queue beyond that up to `queue_timeout_s`.
    With `quota_by_count` (LIBRA's count-based split) a request inside the quota goes to a VM
    even when it must wait (up to `queue_timeout_s`), and one outside it to serverless.
    """
    if not use_vms:
        return Route.SERVERLESS
    if quota_by_count and vm_wait_s is not None and quota_left and vm_wait_s <= queue_timeout_s:
        return Route.VM
    if vm_wait_s is not None and quota_left and \
            vm_wait_s + expected_service_s <= sla_budget_s + FIT_TOLERANCE_S:
        return Route.VM
    if spill_to_serverless:
        return Route.SERVERLESS
    if vm_wait_s is None or vm_wait_s > queue_timeout_s:
        return Route.DROP
    return Route.VM
