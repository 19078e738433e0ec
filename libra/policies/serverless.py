"""`serverless` (the paper's FaaS): every request to serverless functions, no VMs at all."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from libra.policies.base import Decision, Observation


@dataclass
class ServerlessOnly:
    """Pay per request, nothing idle: the cost floor at low load, the cold-start ceiling at bursts."""

    name: ClassVar[str] = "serverless"

    def decide(self, obs: Observation) -> Decision:
        return Decision(target_vms=0, reason="serverless only", use_vms=False)
