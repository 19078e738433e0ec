"""The server as shipped (uvicorn with uvloop) after video requests keeps starting children:
cold starts and keep-warm starts interleaved with video never freeze it, and a SIGKILLed server
leaves no worker or instance behind."""

from __future__ import annotations

import base64
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from tests.e2e.test_serve import Server
from tests.helpers import encode_video


def descendants(pid: int) -> set[int]:
    """Every process below `pid`, read from /proc (children of each of its threads)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = (task / "children").read_text().split()
            except OSError:
                continue
            for kid in map(int, kids):
                if kid not in found:
                    found.add(kid)
                    todo.append(kid)
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_video_then_cold_and_warm_starts_never_freeze_and_sigkill_leaves_no_child(
        built_models: tuple[Path, dict], tmp_path: Path) -> None:
    # libra against a 0.5 s SLA keeps a warm set (keep-warm starts); a 1 s keep-alive reaps idle
    # instances between cycles, so every burst meets cold starts too
    server = Server(built_models[0], tmp_path, "--policy", "libra", "--initial-vms", "0",
                    "--sla-s", "0.5", "--serverless-keep-alive-s", "1")
    frames = np.random.default_rng(0).integers(0, 255, (24, 64, 64, 3)).astype(np.uint8)
    video = base64.b64encode(encode_video(frames)).decode()
    statuses: list[int] = []
    try:
        with httpx.Client(timeout=90) as client, ThreadPoolExecutor(4) as pool:
            for _ in range(6):
                statuses.append(client.post(f"{server.url}/predict",
                                            json={"video": video, "text": "look"}).status_code)
                burst = [pool.submit(client.post, f"{server.url}/predict", json={"text": "hi"})
                         for _ in range(4)]
                statuses += [f.result().status_code for f in burst]
                health = client.get(f"{server.url}/healthz", timeout=10)
                assert health.status_code == 200
                time.sleep(1.5)  # past the keep-alive: the next burst starts instances again
            status = client.get(f"{server.url}/status").json()
        assert statuses == [200] * len(statuses)
        assert status["serverless"]["cold_starts"] >= 6
        children = descendants(server.proc.pid)
        assert children, "the server should have started instances"
    finally:
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(30)
        server.log.close()
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in children):
        assert time.monotonic() < deadline, [pid for pid in children if alive(pid)]
        time.sleep(0.2)
