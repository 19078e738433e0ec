"""`serverless` (the paper's FaaS): every request to serverless functions, no VMs at all."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from libra.core.policies.base import Decision, Observation, Quiet


@dataclass
class ServerlessOnly:
    """Pay per request, nothing idle: cheapest at low load, cold starts at every burst."""

    name: ClassVar[str] = "serverless"

    def decide(self, obs: Observation) -> Decision:
        return Decision(target_vms=0, reason="serverless only", use_vms=False)

    def quiet_until(self, obs: Observation, decision: Decision) -> Quiet:
        """Always: every request goes to serverless, nothing is remembered (see `Quiet`)."""
        return Quiet(math.inf, fleet_blind=True)
