"""`vm-static` (the paper's MAX): a fixed VM fleet sized for the peak, no serverless."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from libra.core.policies.base import Decision, Observation, Quiet
from libra.core.policies.steps import vms_for_rate


@dataclass
class VMStatic:
    """Peak provisioning: the cost ceiling every other policy is measured against.

    Requests that find every VM busy wait in the VM queue (there is no serverless to spill to).
    """

    name: ClassVar[str] = "vm-static"
    fleet_size: int = 1

    def __post_init__(self) -> None:
        if self.fleet_size < 0:
            raise ValueError(f"fleet_size ({self.fleet_size}) must not be negative")

    @classmethod
    def for_peak(cls, peak_rps: float, capacity_rps: float, utilisation: float = 1.0) -> VMStatic:
        """A fleet that carries `peak_rps` with each VM at most `utilisation` busy."""
        return cls(fleet_size=max(1, vms_for_rate(peak_rps, capacity_rps, utilisation)))

    def decide(self, obs: Observation) -> Decision:
        return Decision(
            target_vms=self.fleet_size,
            reason=f"fixed fleet of {self.fleet_size} sized for the peak",
            spill_to_serverless=False,
        )

    def quiet_until(self, obs: Observation, decision: Decision) -> Quiet:
        """Always: the fleet is fixed and nothing is remembered (see `Quiet`)."""
        return Quiet(math.inf, fleet_blind=True)
