"""The scripted server answers a kept-alive connection at once: its sockets have Nagle's
algorithm off (with it on, each request after the first waited for the client's delayed
ACK, at least 40 ms on Linux, which every benchmark against the stub paid per turn)."""

from __future__ import annotations

import statistics
import time

import httpx

from swarm.llmstub import StubScript, StubServer

SCRIPT = {"conversations": [{"turns": [{"text": "hi"}]}]}


def test_requests_on_a_kept_alive_connection_wait_for_no_ack() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "Task a: hi"}]}
    with StubServer(StubScript.model_validate(SCRIPT)) as server, httpx.Client() as client:
        url = f"{server.base_url}/openai/v1/chat/completions"
        times = []
        for _ in range(9):  # one connection, kept alive
            t = time.perf_counter()
            r = client.post(url, json=body, headers={"authorization": "Bearer k"})
            times.append(time.perf_counter() - t)
            assert r.status_code == 200
        assert len(server.requests) == 9
    assert statistics.median(times[1:]) < 0.03, times
