"""Spot on the EC2 Auto Scaling provisioner (issue 18), against botocore's Stubber: the boto3
calls production makes, with the parameters AWS's service model accepts.

The group is mixed-instances: desired capacity = the decision's target, on-demand base = its
`on_demand_vms` (spot above, 0 % on-demand above the base), set only when it changes; a failed
update is counted and logged, the capacity still set, and the controller ticks on. A worker that
got an interruption notice is DRAINING, not READY, and never routed to."""

from __future__ import annotations

import logging
from typing import Any

import pytest

boto3 = pytest.importorskip("boto3", reason="the AWS provisioner needs boto3")
from botocore.stub import Stubber  # noqa: E402

from libra.core.lifecycle import VMState  # noqa: E402
from libra.core.platform import Platform  # noqa: E402
from libra.core.policies.base import Decision  # noqa: E402
from libra.serving.backends.noop import NoopDriver  # noqa: E402
from libra.serving.backends.vm import VMBackend  # noqa: E402
from libra.serving.control.controller import Controller  # noqa: E402
from libra.serving.provision.aws import AutoScalingProvisioner  # noqa: E402
from libra.serving.router import Router  # noqa: E402
from libra.serving.state.rates import RateMonitor  # noqa: E402
from libra.serving.state.registry import MemoryRegistry, WorkerInfo  # noqa: E402
from tests.helpers import Scripted  # noqa: E402

pytestmark = pytest.mark.unit
GROUP = "libra-workers"


def instance(iid: str, state: str = "InService") -> dict[str, Any]:
    return {"InstanceId": iid, "LifecycleState": state, "ProtectedFromScaleIn": False,
            "AvailabilityZone": "us-east-1a", "HealthStatus": "Healthy",
            "InstanceType": "g4dn.xlarge"}


def group(desired: int, instances: list[dict[str, Any]], *, base: int | None = 1,
          percent: int = 0) -> dict[str, Any]:
    """A describe answer; `base` None: a plain launch-template group, not mixed-instances."""
    g: dict[str, Any] = {
        "AutoScalingGroupName": GROUP, "MinSize": 0, "MaxSize": 8, "DesiredCapacity": desired,
        "DefaultCooldown": 300, "AvailabilityZones": ["us-east-1a"], "HealthCheckType": "ELB",
        "CreatedTime": "2026-01-01T00:00:00Z", "Instances": instances,
        "CapacityRebalance": True}
    if base is not None:
        g["MixedInstancesPolicy"] = {
            "LaunchTemplate": {"LaunchTemplateSpecification": {
                "LaunchTemplateId": "lt-0123456789abcdef0", "Version": "3"},
                "Overrides": [{"InstanceType": "g4dn.xlarge"}, {"InstanceType": "g5.xlarge"}]},
            "InstancesDistribution": {
                "OnDemandAllocationStrategy": "prioritized", "OnDemandBaseCapacity": base,
                "OnDemandPercentageAboveBaseCapacity": percent,
                "SpotAllocationStrategy": "price-capacity-optimized"}}
    else:
        g["LaunchTemplate"] = {"LaunchTemplateId": "lt-0123456789abcdef0", "Version": "3"}
    return {"AutoScalingGroups": [g]}


def update(desired: int, base: int) -> dict[str, Any]:
    """The parameters of the one call that sets the size and the mix."""
    return {"AutoScalingGroupName": GROUP, "DesiredCapacity": desired, "MixedInstancesPolicy": {
        "InstancesDistribution": {"OnDemandBaseCapacity": base,
                                  "OnDemandPercentageAboveBaseCapacity": 0}}}


def set_desired(n: int) -> dict[str, Any]:
    return {"AutoScalingGroupName": GROUP, "DesiredCapacity": n, "HonorCooldown": False}


@pytest.fixture
def client():  # type: ignore[no-untyped-def]
    return boto3.client("autoscaling", region_name="us-east-1", aws_access_key_id="x",
                        aws_secret_access_key="x")


@pytest.fixture
def ec2():  # type: ignore[no-untyped-def]
    return boto3.client("ec2", region_name="us-east-1", aws_access_key_id="x",
                        aws_secret_access_key="x")


def described(*instances: tuple[str, bool]) -> dict[str, Any]:
    """A describe_instances answer: (id, is spot) each."""
    return {"Reservations": [{"ReservationId": "r-1", "Instances": [
        {"InstanceId": iid, **({"InstanceLifecycle": "spot"} if spot else {})}
        for iid, spot in instances]}]}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_on_demand_base_follows_the_decision_and_is_set_only_when_it_changes(client) -> None:  # type: ignore[no-untyped-def]
    p = AutoScalingProvisioner(GROUP, registry=MemoryRegistry(), client=client, max_vms=8,
                               spot_enabled=True)
    with Stubber(client) as stub:
        # base already 1: only the size changes, by the usual call
        stub.add_response("describe_auto_scaling_groups", group(2, [], base=1))
        stub.add_response("set_desired_capacity", {}, set_desired(4))
        p.set_target(4, on_demand_vms=1)
        # the policy wants two on-demand: one call sets both
        stub.add_response("describe_auto_scaling_groups", group(4, [], base=1))
        stub.add_response("update_auto_scaling_group", {}, update(4, 2))
        p.set_target(4, on_demand_vms=2)
        # nothing changed: no call but the describe
        stub.add_response("describe_auto_scaling_groups", group(4, [], base=2))
        p.set_target(4, on_demand_vms=2)
        # smaller and all spot: the base goes with the size
        stub.add_response("describe_auto_scaling_groups", group(4, [], base=2))
        stub.add_response("update_auto_scaling_group", {}, update(3, 0))
        p.set_target(3, on_demand_vms=0)
        # no VM at all: nothing to mix, the base is left as it is
        stub.add_response("describe_auto_scaling_groups", group(3, [], base=0))
        stub.add_response("set_desired_capacity", {}, set_desired(0))
        p.set_target(0)
        stub.assert_no_pending_responses()
    assert (p.desired, p.on_demand_base, p.fleet_errors) == (0, 0, 0)


def test_no_on_demand_part_means_all_on_demand_and_the_base_is_clamped(client) -> None:  # type: ignore[no-untyped-def]
    p = AutoScalingProvisioner(GROUP, registry=MemoryRegistry(), client=client, max_vms=6,
                               spot_enabled=True)
    with Stubber(client) as stub:
        stub.add_response("describe_auto_scaling_groups", group(1, [], base=1))
        stub.add_response("update_auto_scaling_group", {}, update(2, 6))
        p.set_target(2)  # a policy that says nothing of spot: the base is max_vms, all on-demand
        stub.add_response("describe_auto_scaling_groups", group(2, [], base=6))
        stub.add_response("set_desired_capacity", {}, set_desired(5))
        p.set_target(5)  # the base stays max_vms: no second update
        stub.add_response("describe_auto_scaling_groups", group(5, [], base=6))
        stub.add_response("update_auto_scaling_group", {}, update(4, 4))
        p.set_target(4, on_demand_vms=4)  # all on-demand, said: the base is the target
        stub.add_response("describe_auto_scaling_groups", group(4, [], base=4))
        stub.add_response("update_auto_scaling_group", {}, update(6, 6))
        p.set_target(9, on_demand_vms=7)  # capped at max_vms, the base at the target: 6
        stub.assert_no_pending_responses()


def test_a_percentage_left_by_terraform_is_brought_to_zero(client) -> None:  # type: ignore[no-untyped-def]
    """With spot on, every VM above the base is spot, whatever the group was created with."""
    p = AutoScalingProvisioner(GROUP, registry=MemoryRegistry(), client=client,
                               spot_enabled=True)
    with Stubber(client) as stub:
        stub.add_response("describe_auto_scaling_groups", group(2, [], base=1, percent=100))
        stub.add_response("update_auto_scaling_group", {}, update(2, 1))
        p.set_target(2, on_demand_vms=1)
        stub.assert_no_pending_responses()


def test_with_spot_off_the_mix_is_never_touched(client) -> None:  # type: ignore[no-untyped-def]
    p = AutoScalingProvisioner(GROUP, registry=MemoryRegistry(), client=client)
    with Stubber(client) as stub:  # an update_auto_scaling_group would find no response: raise
        stub.add_response("describe_auto_scaling_groups", group(1, [], base=1, percent=100))
        stub.add_response("set_desired_capacity", {}, set_desired(3))
        p.set_target(3, on_demand_vms=0)
        stub.add_response("describe_auto_scaling_groups", group(3, [], base=1, percent=100))
        p.set_target(3, on_demand_vms=2)
        stub.assert_no_pending_responses()


def test_a_failed_update_is_counted_logged_and_the_size_still_set_then_retried_later(
        client, caplog) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    errors: list[str] = []
    p = AutoScalingProvisioner(GROUP, registry=MemoryRegistry(), client=client,
                               spot_enabled=True, clock=clock, mix_retry_s=60.0,
                               on_fleet_error=errors.append)
    caplog.set_level(logging.WARNING)
    with Stubber(client) as stub:
        stub.add_response("describe_auto_scaling_groups", group(1, [], base=1))
        stub.add_client_error("update_auto_scaling_group", service_error_code="AccessDenied",
                              service_message="not authorized to perform autoscaling:"
                              "UpdateAutoScalingGroup", http_status_code=403,
                              expected_params=update(3, 0))
        stub.add_response("set_desired_capacity", {}, set_desired(3))
        p.set_target(3, on_demand_vms=0)
        # within the retry interval: the mix is not tried again, the size is already right
        clock.now = 30.0
        stub.add_response("describe_auto_scaling_groups", group(3, [], base=1))
        p.set_target(3, on_demand_vms=0)
        clock.now = 61.0
        stub.add_response("describe_auto_scaling_groups", group(3, [], base=1))
        stub.add_response("update_auto_scaling_group", {}, update(3, 0))
        p.set_target(3, on_demand_vms=0)
        stub.assert_no_pending_responses()
    assert (p.fleet_errors, errors) == (1, ["update_auto_scaling_group"])
    assert p.on_demand_base == 0
    record = next(r for r in caplog.records if "on-demand base" in r.getMessage())
    assert "setting its desired capacity alone" in record.getMessage()
    assert record.exc_info is not None
    assert "AccessDenied" in str(record.exc_info[1])


def test_a_group_that_is_not_mixed_instances_is_reported_and_still_sized(client, caplog) -> None:  # type: ignore[no-untyped-def]
    p = AutoScalingProvisioner(GROUP, registry=MemoryRegistry(), client=client,
                               spot_enabled=True)
    with Stubber(client) as stub:
        stub.add_response("describe_auto_scaling_groups", group(1, [], base=None))
        stub.add_response("set_desired_capacity", {}, set_desired(2))
        p.set_target(2, on_demand_vms=1)
        stub.assert_no_pending_responses()
    assert p.fleet_errors == 1
    assert "has no mixed instances policy" in caplog.text


def test_the_controller_ticks_on_through_a_failing_update(client) -> None:  # type: ignore[no-untyped-def]
    """The production path end to end: policy decision -> controller -> boto3 (stubbed)."""
    clock = Clock()
    p = AutoScalingProvisioner(GROUP, registry=MemoryRegistry(), client=client,
                               spot_enabled=True, clock=clock)
    policy = Scripted(((0.0, Decision(2, "two, one on-demand", on_demand_vms=1)),))
    serverless = NoopDriver()
    router = Router(p.ready_workers, VMBackend(), serverless)
    ctl = Controller(policy, RateMonitor(clock=lambda: 1000.0), p, serverless, router,
                     Platform(), clock=lambda: 1000.0)
    with Stubber(client) as stub:
        for _ in range(2):  # observe, then set_target's own describe
            stub.add_response("describe_auto_scaling_groups", group(0, [], base=0))
        stub.add_client_error("update_auto_scaling_group", service_error_code="Throttling",
                              service_message="Rate exceeded", http_status_code=400)
        stub.add_response("set_desired_capacity", {}, set_desired(2))
        ctl.tick()
        clock.now = 120.0  # past the retry interval
        for _ in range(2):
            stub.add_response("describe_auto_scaling_groups", group(2, [], base=0))
        stub.add_response("update_auto_scaling_group", {}, update(2, 1))
        ctl.tick()
        stub.assert_no_pending_responses()
    assert (ctl.ticks, p.fleet_errors, p.on_demand_base) == (2, 1, 1)


def test_a_worker_with_a_notice_is_draining_not_routed_and_logged_once(client, ec2, caplog) -> None:  # type: ignore[no-untyped-def]
    registry = MemoryRegistry()
    registry.heartbeat(WorkerInfo("i-od", "http://10.0.0.1:8101"))
    registry.heartbeat(WorkerInfo("i-spot", "http://10.0.0.2:8101"))
    noticed: list[str] = []
    p = AutoScalingProvisioner(GROUP, registry=registry, client=client, spot_enabled=True,
                               on_notice=noticed.append, ec2_client=ec2)
    caplog.set_level(logging.WARNING)
    members = [instance("i-od"), instance("i-spot"), instance("i-new", "Pending")]
    with Stubber(client) as stub, Stubber(ec2) as ec2_stub:
        ec2_stub.add_response("describe_instances", described(
            ("i-new", True), ("i-od", False), ("i-spot", True)),
            {"InstanceIds": ["i-new", "i-od", "i-spot"]})
        for _ in range(4):
            stub.add_response("describe_auto_scaling_groups", group(3, members, base=1))
        p.poll()
        assert p.counts()[VMState.READY] == 2
        assert p.spot_vms == 2  # three alive, the first one on-demand
        registry.heartbeat(WorkerInfo("i-spot", "http://10.0.0.2:8101", draining=True))
        p.poll()
        p.poll()  # still draining: not a second notice
        counts = p.counts()
        assert (counts[VMState.READY], counts[VMState.DRAINING], counts[VMState.BOOTING]) \
            == (1, 1, 1)
        assert p.vm_states()["i-spot"] == VMState.DRAINING  # billed until it is gone
        assert [w.worker_id for w in p.ready_workers()] == ["i-od"]
        registry.remove("i-spot")  # drained and left; the instance is InService until reclaimed
        p.poll()
        assert p.vm_states()["i-spot"] == VMState.DRAINING  # not BOOTING: no capacity coming
        stub.add_response("describe_auto_scaling_groups",
                          group(3, [instance("i-od"), instance("i-new")], base=1))
        p.poll()  # reclaimed
    assert set(p.vm_states()) == {"i-od", "i-new"}
    assert (noticed, p.notices) == (["i-spot"], 1)
    assert caplog.text.count("worker i-spot is draining (spot interruption notice)") == 1
    assert "without its worker registering" not in caplog.text


def test_a_follower_skips_draining_workers_too(client) -> None:  # type: ignore[no-untyped-def]
    registry = MemoryRegistry()
    registry.heartbeat(WorkerInfo("i-a", "http://10.0.0.1:8101"))
    registry.heartbeat(WorkerInfo("i-b", "http://10.0.0.2:8101", draining=True))
    p = AutoScalingProvisioner(GROUP, registry=registry, client=client)
    with Stubber(client) as stub:
        p.refresh_workers()
        stub.assert_no_pending_responses()
    assert [w.worker_id for w in p.ready_workers()] == ["i-a"]


def test_each_instance_market_is_asked_of_ec2_once_and_a_failure_is_retried(
        client, ec2, caplog) -> None:  # type: ignore[no-untyped-def]
    """The cost meter bills spot at the spot price only if it knows which instances are spot:
    EC2's InstanceLifecycle, asked once per new instance; until every live one is known, the
    spot count falls back on the group's rule."""
    errors: list[str] = []
    p = AutoScalingProvisioner(GROUP, registry=MemoryRegistry(), client=client,
                               spot_enabled=True, ec2_client=ec2, on_fleet_error=errors.append)
    caplog.set_level(logging.WARNING)
    two = [instance("i-a"), instance("i-b", "Pending")]
    three = [*two, instance("i-c", "Pending")]
    with Stubber(client) as stub, Stubber(ec2) as ec2_stub:
        stub.add_response("describe_auto_scaling_groups", group(2, two, base=0))
        ec2_stub.add_client_error("describe_instances", service_error_code="UnauthorizedOperation",
                                  http_status_code=403)
        p.poll()
        assert (p.spot_ids, p.spot_vms, errors) == (frozenset(), 2, ["describe_instances"])
        # asked again; i-a turns out on-demand although the rule would call it spot
        stub.add_response("describe_auto_scaling_groups", group(2, two, base=0))
        ec2_stub.add_response("describe_instances", described(("i-a", False), ("i-b", True)),
                              {"InstanceIds": ["i-a", "i-b"]})
        p.poll()
        assert (p.spot_ids, p.spot_vms) == (frozenset({"i-b"}), 1)
        # only the new instance is asked about; a known one is never asked again
        stub.add_response("describe_auto_scaling_groups", group(3, three, base=0))
        ec2_stub.add_response("describe_instances", described(("i-c", True)),
                              {"InstanceIds": ["i-c"]})
        p.poll()
        stub.add_response("describe_auto_scaling_groups", group(3, three, base=0))
        p.poll()
        stub.assert_no_pending_responses()
        ec2_stub.assert_no_pending_responses()
    assert (p.spot_ids, p.spot_vms, p.fleet_errors) == (frozenset({"i-b", "i-c"}), 2, 1)
    assert "cannot read the market" in caplog.text


def test_with_spot_off_ec2_is_never_asked(client) -> None:  # type: ignore[no-untyped-def]
    p = AutoScalingProvisioner(GROUP, registry=MemoryRegistry(), client=client)
    with Stubber(client) as stub:
        stub.add_response("describe_auto_scaling_groups", group(1, [instance("i-a")], base=None))
        p.poll()
    assert (p.markets, p.spot_ids, p.spot_vms) == (None, frozenset(), 0)
