"""The EC2 Auto Scaling provisioner against botocore's Stubber (the production boto3 calls)."""

from __future__ import annotations

import pytest

boto3 = pytest.importorskip("boto3", reason="the AWS provisioner needs boto3")
from botocore.stub import Stubber  # noqa: E402

from libra.core.lifecycle import VMState  # noqa: E402
from libra.serving.provision.aws import AutoScalingProvisioner  # noqa: E402
from libra.serving.state.registry import MemoryRegistry, WorkerInfo  # noqa: E402

pytestmark = pytest.mark.unit
GROUP = "libra-workers"


def instance(iid: str, state: str, protected: bool = False) -> dict:
    return {"InstanceId": iid, "LifecycleState": state, "ProtectedFromScaleIn": protected,
            "AvailabilityZone": "us-east-1a", "HealthStatus": "Healthy",
            "LaunchConfigurationName": "lc"}


def group(desired: int, instances: list[dict]) -> dict:
    return {"AutoScalingGroups": [{
        "AutoScalingGroupName": GROUP, "MinSize": 0, "MaxSize": 10, "DesiredCapacity": desired,
        "DefaultCooldown": 300, "AvailabilityZones": ["us-east-1a"], "HealthCheckType": "EC2",
        "CreatedTime": "2026-01-01T00:00:00Z", "Instances": instances}]}


@pytest.fixture
def client():  # type: ignore[no-untyped-def]
    return boto3.client("autoscaling", region_name="us-east-1", aws_access_key_id="x",
                        aws_secret_access_key="x")


def test_lifecycle_states_map_and_only_registered_in_service_workers_route(client) -> None:  # type: ignore[no-untyped-def]
    registry = MemoryRegistry()
    registry.heartbeat(WorkerInfo("i-ready", "http://10.0.0.1:8101"))
    registry.heartbeat(WorkerInfo("i-gone", "http://10.0.0.9:8101"))
    p = AutoScalingProvisioner(GROUP, registry=registry, client=client)
    with Stubber(client) as stub:
        stub.add_response("describe_auto_scaling_groups", group(3, [
            instance("i-boot", "Pending"), instance("i-ready", "InService"),
            instance("i-quiet", "InService"), instance("i-bye", "Terminating:Wait")]),
            {"AutoScalingGroupNames": [GROUP]})
        p.poll()
    counts = p.counts()  # i-quiet is InService but its worker never registered: not capacity
    assert (counts[VMState.BOOTING], counts[VMState.READY], counts[VMState.DRAINING]) == (2, 1, 1)
    assert p.vm_states()["i-quiet"] == VMState.BOOTING  # still billed
    assert [w.worker_id for w in p.ready_workers()] == ["i-ready"]


def test_scale_in_protects_busy_instances_first(client) -> None:  # type: ignore[no-untyped-def]
    p = AutoScalingProvisioner(GROUP, registry=MemoryRegistry(), client=client,
                               in_flight=lambda worker_id: int(worker_id == "i-busy"))
    with Stubber(client) as stub:
        stub.add_response("describe_auto_scaling_groups", group(2, [
            instance("i-busy", "InService"), instance("i-idle", "InService", protected=True)]))
        stub.add_response("set_instance_protection", {}, {
            "InstanceIds": ["i-busy"], "AutoScalingGroupName": GROUP,
            "ProtectedFromScaleIn": True})
        stub.add_response("set_instance_protection", {}, {
            "InstanceIds": ["i-idle"], "AutoScalingGroupName": GROUP,
            "ProtectedFromScaleIn": False})
        stub.add_response("set_desired_capacity", {}, {
            "AutoScalingGroupName": GROUP, "DesiredCapacity": 1, "HonorCooldown": False})
        p.set_target(1)
        stub.assert_no_pending_responses()
    assert p.desired == 1


def test_scale_out_sets_capacity_and_an_unchanged_target_calls_nothing(client) -> None:  # type: ignore[no-untyped-def]
    p = AutoScalingProvisioner(GROUP, registry=MemoryRegistry(), client=client, max_vms=4)
    with Stubber(client) as stub:
        stub.add_response("describe_auto_scaling_groups", group(1, []))
        stub.add_response("set_desired_capacity", {}, {
            "AutoScalingGroupName": GROUP, "DesiredCapacity": 4, "HonorCooldown": False})
        p.set_target(9)  # capped at max_vms
        stub.add_response("describe_auto_scaling_groups", group(4, []))
        p.set_target(4)
        stub.assert_no_pending_responses()


def test_a_restarted_router_adopts_the_groups_size(client) -> None:  # type: ignore[no-untyped-def]
    p = AutoScalingProvisioner(GROUP, registry=MemoryRegistry(), client=client, max_vms=4)
    with Stubber(client) as stub:
        stub.add_response("describe_auto_scaling_groups",
                          group(3, [instance(f"i-{k}", "InService") for k in range(3)]))
        launched = p.start(1)  # no set_desired_capacity: the serving fleet keeps its 3 VMs
        stub.assert_no_pending_responses()
    assert launched == 0
    assert p.desired == 3


class FlakyRegistry(MemoryRegistry):
    """A registry whose reads fail while `down` (Redis unreachable)."""

    down = False

    def alive(self) -> list[WorkerInfo]:
        if self.down:
            raise ConnectionError("redis unreachable")
        return super().alive()


def test_an_unreadable_registry_keeps_the_known_workers_still_in_service(client) -> None:  # type: ignore[no-untyped-def]
    registry = FlakyRegistry()
    for iid in ("i-a", "i-b"):
        registry.heartbeat(WorkerInfo(iid, f"http://10.0.0.1/{iid}"))
    p = AutoScalingProvisioner(GROUP, registry=registry, client=client)
    with Stubber(client) as stub:
        stub.add_response("describe_auto_scaling_groups", group(2, [
            instance("i-a", "InService"), instance("i-b", "InService")]))
        p.poll()
        registry.down = True
        stub.add_response("describe_auto_scaling_groups", group(2, [
            instance("i-a", "InService"), instance("i-b", "Terminating")]))
        p.poll()  # must not raise: the controller ticks on
    assert [w.worker_id for w in p.ready_workers()] == ["i-a"]  # i-b left service meanwhile
    assert p.registry_errors == 1


def test_a_worker_whose_heartbeat_expires_stops_counting_as_ready(client, caplog) -> None:  # type: ignore[no-untyped-def]
    now = [0.0]
    registry = MemoryRegistry(ttl_s=10.0, clock=lambda: now[0])
    registry.heartbeat(WorkerInfo("i-a", "http://10.0.0.1:8101"))
    p = AutoScalingProvisioner(GROUP, registry=registry, client=client, clock=lambda: now[0],
                               unregistered_warn_s=60.0)
    with Stubber(client) as stub:
        for _ in range(3):
            stub.add_response("describe_auto_scaling_groups",
                              group(1, [instance("i-a", "InService")]))
        p.poll()
        assert p.counts()[VMState.READY] == 1
        now[0] = 11.0  # the container died: no heartbeat for longer than the TTL
        p.poll()
        counts = p.counts()
        assert (counts[VMState.READY], counts[VMState.BOOTING]) == (0, 1)
        assert p.ready_workers() == []
        assert "without its worker registering" not in caplog.text
        now[0] = 71.0  # unregistered for the warning's 60 s
        p.poll()
    assert "instance i-a has been InService for 60 s without its worker registering" \
        in caplog.text


def test_a_follower_refreshes_workers_from_the_registry_without_calling_aws(client) -> None:  # type: ignore[no-untyped-def]
    registry = MemoryRegistry()
    registry.heartbeat(WorkerInfo("i-a", "http://10.0.0.1:8101"))
    p = AutoScalingProvisioner(GROUP, registry=registry, client=client)
    with Stubber(client) as stub:  # no response queued: any AWS call would raise
        p.refresh_workers()
        stub.assert_no_pending_responses()
    assert [w.worker_id for w in p.ready_workers()] == ["i-a"]
    assert p.vm_states() == {}  # the fleet is the leader's to report and bill
