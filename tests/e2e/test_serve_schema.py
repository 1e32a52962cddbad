"""A property-based run (schemathesis) against `swarm serve`'s OpenAPI document: no
request it generates gets a 5xx, and every error has the documented shape."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarm.blackboard.connection import RedisHandle
from tests.e2e.serveharness import served
from tests.e2e.swarmrun import new_run_id
from tests.e2e.test_serve import config, script

pytestmark = pytest.mark.e2e

# per operation: the whole run stays well under a minute (more: SWARM_SCHEMA_EXAMPLES)
EXAMPLES = int(os.environ.get("SWARM_SCHEMA_EXAMPLES", "30"))


def test_no_server_errors(tmp_path: Path, redis_handle: RedisHandle) -> None:
    with served(tmp_path, script(1, 0), redis_handle.url, config(1)) as s:
        doc = httpx.get(f"{s.base}/openapi.json", headers=s.auth).json()
        assert doc["openapi"].startswith("3.1")
        assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
        expected = {
            "/health",
            "/runs",
            "/runs/{run_id}",
            "/runs/{run_id}/stop",
            "/runs/{run_id}/resume",
            "/runs/{run_id}/events",
            "/runs/{run_id}/sessions/{task}",
            "/runs/{run_id}/report",
            "/runs/{run_id}/diff",
            "/runs/{run_id}/approvals",
            "/runs/{run_id}/approvals/{approval_id}",
        }
        assert set(doc["paths"]) == expected
        run_id = new_run_id("schema")
        s.start_run(run_id)  # a finished run, so the generated requests also reach one
        s.wait_state(run_id, {"completed"})
        schema = schemathesis.openapi.from_dict(doc)
        seen: dict[str, set[int]] = {}
        for result in schema.get_all_operations():
            operation = result.ok()

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(), real=st.booleans(), task=st.booleans())
            def check(case: schemathesis.Case, real: bool, task: bool) -> None:
                params = case.path_parameters or {}
                if real and "run_id" in params:
                    params["run_id"] = run_id
                    if task and "task" in params:
                        params["task"] = "t0"
                resp = case.call(base_url=s.base, headers=s.auth, timeout=30)
                seen.setdefault(case.operation.label, set()).add(resp.status_code)
                assert resp.status_code < 500, (case.operation.label, resp.text)
                if resp.status_code >= 400:
                    body = resp.json()
                    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}

            check()
        assert len(seen) == sum(len(ops) for ops in doc["paths"].values())
        assert 200 in seen["GET /runs/{run_id}"] and 200 in seen["GET /runs/{run_id}/events"]
