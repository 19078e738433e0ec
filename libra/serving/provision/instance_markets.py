"""Which EC2 instances are spot: asked of EC2 once per instance, remembered while it lives.

A mixed-instances Auto Scaling group does not say which of its instances are spot; EC2's
`DescribeInstances` does (`InstanceLifecycle == "spot"`). The cost meter needs it to bill a spot
instance at the spot price, and the policy's observation to count spot VMs exactly. An
instance's market never changes, so each is asked about once; a module of its own because it
talks to another AWS service than the Auto Scaling provisioner (one client per module keeps the
IAM policy derivable from the code: tests/unit/test_infra.py).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any


class InstanceMarkets:
    """Spot or on-demand, by instance id (see module docs)."""

    def __init__(self, client: Any = None, *, region: str | None = None) -> None:
        if client is None:
            import boto3

            client = boto3.client("ec2", region_name=region)
        self.client = client
        self._is_spot: dict[str, bool] = {}

    def learn(self, members: Collection[str]) -> None:
        """Forget instances that left, ask about new ones. Raises what boto3 raises (the
        caller logs and counts it); the instances not learned are asked about next time."""
        self._is_spot = {iid: spot for iid, spot in self._is_spot.items() if iid in members}
        new = sorted(set(members) - set(self._is_spot))
        if not new:
            return
        answer = self.client.describe_instances(InstanceIds=new)
        self._is_spot.update({inst["InstanceId"]: inst.get("InstanceLifecycle") == "spot"
                              for res in answer.get("Reservations", [])
                              for inst in res.get("Instances", [])})

    def known(self, iid: str) -> bool:
        return iid in self._is_spot

    def is_spot(self, iid: str) -> bool:
        return self._is_spot.get(iid, False)

    @property
    def spot_ids(self) -> frozenset[str]:
        return frozenset(iid for iid, spot in self._is_spot.items() if spot)
