"""`spock` (Gunasekaran et al., IEEE CLOUD 2019): reactive VMs, serverless while the fleet changes.

The VM fleet follows the same reactive autoscaler as `vm-reactive`; while any VM is booting or
draining, requests that the ready VMs cannot finish inside the SLA go to serverless instead of
queueing. Outside those periods it behaves exactly like `vm-reactive`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from libra.core.policies.vm_reactive import VMReactive


@dataclass
class Spock(VMReactive):
    """`vm-reactive` plus serverless overflow while VMs boot or drain."""

    name: ClassVar[str] = "spock"
    spills_while_changing: ClassVar[bool] = True
