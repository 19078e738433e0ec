"""The worker's instance-metadata watcher (`handlers.spot_watch`) against a loopback server that
plays IMDSv2 (`tests.fake_imds`): token first, 404 until a notice, the notice once per kind,
a refused token renewed, an IMDS that does not answer logged and polled again."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from handlers.spot_watch import INSTANCE_ACTION, InstanceMetadata, MetadataError, Notice, watch
from tests.fake_imds import TOKEN_PATH, fake_imds

pytestmark = pytest.mark.unit


def test_no_notice_is_none_and_a_notice_is_read_with_a_session_token() -> None:
    async def run(url: str) -> tuple[Notice | None, Notice | None, Notice | None]:
        imds = InstanceMetadata(url)
        try:
            before = await imds.interruption()
            server.interrupt("2026-12-08T02:00:00Z")
            server.recommend_rebalance()
            return before, await imds.interruption(), await imds.rebalance()
        finally:
            await imds.aclose()

    with fake_imds() as server:
        before, after, rebalance = asyncio.run(run(server.url))
        assert before is None
        assert after == Notice("interruption", {"action": "terminate",
                                                "time": "2026-12-08T02:00:00Z"})
        assert after.when == "2026-12-08T02:00:00Z"
        assert rebalance is not None
        assert rebalance.kind == "rebalance"
        assert server.count("PUT", TOKEN_PATH, 200) == 1  # one token for the three reads
        assert server.count("GET", INSTANCE_ACTION, 401) == 0


def test_a_refused_token_is_renewed_once() -> None:
    async def run(url: str) -> Notice | None:
        imds = InstanceMetadata(url)
        try:
            await imds.interruption()
            server.revoke_tokens()  # as if it expired
            server.interrupt()
            return await imds.interruption()
        finally:
            await imds.aclose()

    with fake_imds() as server:
        assert asyncio.run(run(server.url)) is not None
        assert server.count("GET", INSTANCE_ACTION, 401) == 1
        assert server.count("PUT", TOKEN_PATH, 200) == 2


def test_an_answer_that_is_not_json_is_an_error_naming_the_path() -> None:
    async def run(url: str) -> None:
        imds = InstanceMetadata(url)
        try:
            await imds.interruption()
        finally:
            await imds.aclose()

    with fake_imds() as server:
        server.garbled = True
        with pytest.raises(MetadataError, match="spot/instance-action: not JSON"):
            asyncio.run(run(server.url))


def test_watch_reports_each_kind_once_and_outlives_an_unreachable_imds(caplog) -> None:  # type: ignore[no-untyped-def]
    seen: list[Notice] = []

    async def run(url: str, dead_url: str) -> None:
        imds, dead = InstanceMetadata(url), InstanceMetadata(dead_url, timeout_s=0.2)
        tasks = [asyncio.ensure_future(watch(imds, seen.append, every_s=0.02)),
                 asyncio.ensure_future(watch(dead, seen.append, every_s=0.02))]
        try:
            await asyncio.sleep(0.1)
            server.interrupt()
            server.recommend_rebalance()
            for _ in range(400):  # poll the outcome, generous deadline
                if len(seen) >= 2:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # more polls: the standing notice is not reported again
            assert all(not t.done() for t in tasks)  # the dead one polls on
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await imds.aclose()
            await dead.aclose()

    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{s.getsockname()[1]}"
    caplog.set_level(logging.WARNING)
    with fake_imds() as server:
        asyncio.run(run(server.url, dead_url))
    assert sorted(n.kind for n in seen) == ["interruption", "rebalance"]
    assert f"reading the instance metadata at {dead_url} failed" in caplog.text
    assert caplog.text.count("reading the instance metadata") == 1  # rate-limited
