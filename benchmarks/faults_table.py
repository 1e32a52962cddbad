"""Write the fault table of docs/reliability.md from the figures the fault suite recorded
(`SWARM_FAULTS_REPORT=FILE`, one JSON object per scenario). `make faults` runs the suite
at full size and then this; the table sits between two marker comments, so the rest of
the document is left as written.

    python -m benchmarks.faults_table FILE
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # the checkout: docs/, .swarm/

DOC = PROJECT_ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- fault-table:begin -->", "<!-- fault-table:end -->"

COMMANDS = {
    "agent actor SIGKILL": "test_agent_actors_sigkilled_mid_run",
    "raylet SIGKILL (node loss)": "test_raylet_sigkilled_ray_restarts_and_agents_continue",
    "second Ray node killed": "test_second_ray_node_killed",
    "coordinator SIGKILL, then resume": "test_coordinator_sigkilled_then_resumed",
    "SIGHUP (terminal closed), then resume": "test_sighup_stops_like_sigterm_and_resume_completes",
    "external Redis SIGKILL": "test_external_redis_killed_and_back",
    "provider 529 storm": "test_provider_storm_longer_than_the_retry_window",
    "401 (key revoked), resume with a good key": (
        "test_rejected_key_stops_the_run_once_and_resume_completes"
    ),
    "20 % random 429/529": "test_random_429_and_529",
}


def _test_of(scenario: str) -> str:
    for prefix, test in COMMANDS.items():
        if scenario.startswith(prefix):
            return test
    return ""


def table(rows: list[dict[str, object]]) -> str:
    full = all(r.get("full") for r in rows)
    date = max(str(r.get("date", "")) for r in rows) if rows else ""
    head = (
        f"Measured {date} on {platform.machine()} ({'full sizes, `make faults`' if full else 'quick sizes'}); "
        "every figure is read from the run's event stream and the scripted server's "
        "request log.\n\n"
        "| fault | tasks | completed | lost | completed twice | turns stored twice | "
        "requests (scripted) | wasted | recovered after | exit codes | reproduce |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        rec = "–" if r.get("recover_s") is None else f"{r['recover_s']} s"
        test = _test_of(str(r["scenario"]))
        cmd = f"`SWARM_FAULTS_FULL=1 pytest tests/faults -k {test}`" if test else ""
        notes = f" ({r['notes']})" if r.get("notes") else ""
        lines.append(
            f"| {r['scenario']}{notes} | {r['tasks']} | {r['completed']} | {r['lost']} | "
            f"{r['completed_twice']} | {r['turns_stored_twice']} | {r['requests']} "
            f"({r['scripted_turns']}) | {r['wasted']} | {rec} | "
            f"{', '.join(str(c) for c in r['exit_codes'])} | {cmd} |"  # type: ignore[attr-defined]
        )
    return head + "\n".join(lines) + "\n"


def main(path: str) -> int:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    if not rows:
        print(f"{path}: no figures recorded", file=sys.stderr)
        return 1
    doc = DOC.read_text()
    if BEGIN not in doc or END not in doc:
        print(f"{DOC}: the markers {BEGIN} / {END} are missing", file=sys.stderr)
        return 1
    before, rest = doc.split(BEGIN, 1)
    _, after = rest.split(END, 1)
    DOC.write_text(before + BEGIN + "\n" + table(rows) + END + after)
    print(f"wrote {len(rows)} rows to {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
