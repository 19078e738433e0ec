"""Two real `libra-serve` routers on one Redis: one controller between them, and a takeover when
the leader is killed (SIGKILL: no release, the lease must expire)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_serve import Server

pytestmark = pytest.mark.e2e


def control(server: Server) -> dict:
    return dict(httpx.get(f"{server.url}/status", timeout=10).json()["control"])


def test_one_leader_among_two_routers_and_a_takeover_when_it_dies(
        built_models: tuple[Path, dict], tmp_path: Path, redis_server) -> None:  # type: ignore[no-untyped-def]
    env = {"LIBRA_REDIS_URL": redis_server.url, "LIBRA_SERVERLESS_DRIVER": "noop"}
    a = Server(built_models[0], tmp_path, "--policy", "serverless", "--initial-vms", "0", env=env)
    b = Server(built_models[0], tmp_path, "--policy", "serverless", "--initial-vms", "0", env=env)
    try:
        ca, cb = control(a), control(b)
        assert sorted([ca["role"], cb["role"]]) == ["follower", "leader"]
        leader, follower = (a, b) if ca["role"] == "leader" else (b, a)
        leader_id = control(leader)["router_id"]
        assert control(follower)["leader"] == leader_id
        assert control(follower)["router_id"] != leader_id
        # the follower routes by the leader's decision (serverless only) without deciding
        r = httpx.post(f"{follower.url}/predict", json={"text": "hey"}, timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["backend"] == "serverless"

        leader.proc.kill()
        leader.proc.wait(30)
        deadline = time.monotonic() + 60
        while control(follower)["role"] != "leader":
            assert time.monotonic() < deadline, "the follower never took over"
            time.sleep(0.2)
        now = control(follower)
        assert now["leader"] == now["router_id"] != leader_id
    finally:
        a.stop()
        b.stop()
