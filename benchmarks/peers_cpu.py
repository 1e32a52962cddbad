"""CPU per model call of every peer, side by side: the plain SDK loop, LangGraph, AutoGen
AgentChat, the OpenAI Agents SDK and swarm, on one workload in one run.

    python -m benchmarks.peers_cpu [--quick] [--agents N] [--turns K ...] [--repeat R]
                                   [--no-write] [--chart PATH]

The workload is benchmarks/swarm_cpu.py's: N agents, each one task of K `read` tool
turns (a file of ~1 KB per turn) and a final answer, against the scripted Chat
Completions server in a process of its own. For each K the contestants run one after
the other against the same server: the plain AsyncOpenAI loop (swarm_cpu's), each peer
(a script of benchmarks/peers/ run with the python of the peer's own venv, made on first
use with pinned versions) and `swarm launch`. Each is measured as swarm_cpu measures:
psutil over the contestant's whole process tree, *steady state* from the server's first
to its last request, *total* from the command's start to its exit. With --repeat R the
contestants take turns R times and each figure is the median.

Every run is checked against the server's request log before it counts: each of the N
conversations made exactly K+1 requests (turns 0..K), every one answered 200, and each
turn after the first carried the previous turn's `read` result (the file's last line).
A run that fails the check fails the benchmark. A peer whose venv cannot be installed
is reported as unavailable, with pip's first error line, and the rest is measured.

Writes a section of docs/benchmarks.md (a table per K) and docs/benchmarks-cpu.png."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import swarm_cpu
from benchmarks.peers import PEERS, Peer
from benchmarks.peers.env import PeerUnavailable, installed_versions, venv_python

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TITLE = "Peers side by side: CPU per model call"
CHART = PROJECT_ROOT / "docs" / "benchmarks-cpu.png"
PLAIN = "plain AsyncOpenAI loop"
SWARM = "swarm"
NOTE = (
    "{agents}, each one task of K `read` tool turns (a file of ~1 KB per turn) and "
    "a final answer, against the scripted Chat Completions server in a process of its own; "
    "for each K every contestant runs the same workload against the same server, one after "
    "the other{repeat}. CPU is the sum over the contestant's whole process tree (a peer: "
    "its one process; swarm: the CLI, Ray's processes, the agent actors, the embedded "
    "Redis), sampled with psutil every 50 ms. *steady*: from the server's first to its "
    "last request, per call after the first; *total*: command start to exit, per call. "
    "The peers run in a virtualenv of their own (`.bench-peers/`, made by the benchmark) "
    "at the versions shown; each run was checked against the server's request log (every "
    "conversation K+1 requests, each after the first carrying the `read` result). swarm "
    "runs with `agents_per_actor: {packing}`. Target (issue 13): swarm's steady state "
    "≤ 0.5× the plain loop, not growing with K."
)


class WorkloadMismatch(RuntimeError):
    """A contestant's requests were not the workload: it did not really run it."""


# -- the request log ----------------------------------------------------------------------
def read_log(record: Path) -> list[dict[str, Any]]:
    """The server's request log (one JSON object a line), Chat Completions requests only."""
    out = []
    for line in record.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            if str(r.get("path", "")).endswith("/chat/completions"):
                out.append(r)
    return out


def last_tool_results(body: Any) -> list[str]:
    """The texts of the tool messages after the request's last assistant message."""
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list):
        return []
    tail: list[str] = []
    for m in reversed(messages):
        if not isinstance(m, dict) or m.get("role") == "assistant":
            break
        if m.get("role") == "tool":
            tail.append(_text(m.get("content")))
    return tail[::-1]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and "text" in p
        )
    return ""


def file_marker(turn: int) -> str:
    """The last line of the file the scripted server's ``turn``-th `read` call names."""
    i = turn % swarm_cpu.FILES
    return f"value_{i}_59 = 59"


def check_log(records: Iterable[dict[str, Any]], agents: int, turns: int) -> int:
    """Raise WorkloadMismatch unless the log is the workload run for real; the number of
    model calls otherwise."""
    by_task: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if r.get("status") != 200:
            raise WorkloadMismatch(
                f"request {r.get('seq')} ({r.get('task')}, turn {r.get('turn')}) was answered "
                f"{r.get('status')}: {r.get('error')}"
            )
        if r.get("purpose", "turn") != "turn" or not isinstance(r.get("turn"), int):
            raise WorkloadMismatch(
                f"request {r.get('seq')} ({r.get('task')}) is no turn of the script "
                f"(purpose {r.get('purpose')!r}, turn {r.get('turn')!r})"
            )
        by_task.setdefault(str(r.get("task")), []).append(r)
    wanted = {f"t{a}" for a in range(agents)}
    if set(by_task) != wanted:
        raise WorkloadMismatch(
            f"conversations {sorted(by_task)} in the log, expected {sorted(wanted)}"
        )
    calls = 0
    for task, reqs in sorted(by_task.items()):
        got = sorted(int(r["turn"]) for r in reqs)
        if got != list(range(turns + 1)):
            raise WorkloadMismatch(
                f"{task}: {len(reqs)} requests (turns {got[:5]}...), expected {turns + 1} "
                f"(turns 0..{turns})"
            )
        for r in reqs:
            t = int(r["turn"])
            if t == 0:
                continue
            results = last_tool_results(r["body"])
            if not any(file_marker(t - 1) in text for text in results):
                raise WorkloadMismatch(
                    f"{task}, turn {t}: the request does not carry the result of `read` "
                    f"f{(t - 1) % swarm_cpu.FILES}.py (tool results: "
                    f"{[text[:80] for text in results]})"
                )
        calls += len(reqs)
    return calls


# -- results ------------------------------------------------------------------------------
@dataclass
class Outcome:
    """One contestant at one K: its runs, or why it was not measured."""

    label: str
    versions: str = ""
    runs: list[swarm_cpu.Result] = field(default_factory=list)
    unavailable: str | None = None

    @property
    def calls(self) -> int:
        return self.runs[0].requests if self.runs else 0

    @property
    def steady_ms(self) -> float | None:
        return statistics.median(r.steady_ms for r in self.runs) if self.runs else None

    @property
    def total_ms(self) -> float | None:
        return statistics.median(r.total_ms for r in self.runs) if self.runs else None

    @property
    def peak_rss(self) -> int:
        return max((r.peak_rss for r in self.runs), default=0)


def ratio(value: float | None, base: float | None) -> float | None:
    """value / base, or None when either is missing or the base is not positive."""
    if value is None or base is None or base <= 0:
        return None
    return value / base


def _fmt(x: float | None, spec: str, suffix: str = "") -> str:
    return "–" if x is None else f"{x:{spec}}{suffix}"


def table(turns: int, outcomes: list[Outcome]) -> list[str]:
    """The markdown table of one K: CPU per call, steady and total, and × the plain loop."""
    base = next(o for o in outcomes if o.label == PLAIN)
    lines = [
        f"**K = {turns}** ({base.calls} model calls per contestant)",
        "",
        "| contestant | versions | CPU ms per call, steady | × plain loop | "
        "CPU ms per call, total | × plain loop | peak RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        if o.unavailable is not None:
            why = o.unavailable.replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {o.label} | {o.versions} | unavailable: {why} | | | | |")
            continue
        lines.append(
            f"| {o.label} | {o.versions} | {_fmt(o.steady_ms, '.1f')} | "
            f"{_fmt(ratio(o.steady_ms, base.steady_ms), '.2f', '×')} | "
            f"{_fmt(o.total_ms, '.1f')} | {_fmt(ratio(o.total_ms, base.total_ms), '.2f', '×')} | "
            f"{o.peak_rss / 2**20:,.0f} MB |"
        )
    return lines


def section(
    agents: int,
    by_k: dict[int, list[Outcome]],
    where: dict[str, str],
    repeat: int,
    packing: str,
    quick: bool = False,
) -> str:
    rep = f", {repeat} times in turn (medians)" if repeat > 1 else ""
    who = f"{agents} agent" + ("s" if agents != 1 else "")
    lines = [NOTE.format(agents=who, repeat=rep, packing=packing), ""]
    lines += [
        f"Measured on {where.get('machine')}, {where.get('run at')}, at commit "
        f"{where.get('commit')}" + (" (quick form: `make bench-quick`)" if quick else "") + ".",
        "",
    ]
    lines += [f"![CPU per model call per framework and K]({CHART.name})", ""]
    for turns, outcomes in by_k.items():
        lines += [*table(turns, outcomes), ""]
    return "\n".join(lines)


# -- the chart ----------------------------------------------------------------------------
def write_chart(
    by_k: dict[int, list[Outcome]], path: Path, where: dict[str, str], agents: int | None = None
) -> None:
    """Grouped bars: CPU per model call per contestant, per K, steady state and total."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = list(by_k)
    labels = [o.label for o in next(iter(by_k.values()))]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
    width = 0.8 / max(len(labels), 1)
    for ax, which in zip(axes, ("steady", "total"), strict=True):
        for j, label in enumerate(labels):
            values = []
            for k in ks:
                o = next(o for o in by_k[k] if o.label == label)
                v = o.steady_ms if which == "steady" else o.total_ms
                values.append(v if v is not None else 0.0)
            missing = all(
                next(o for o in by_k[k] if o.label == label).unavailable is not None for k in ks
            )
            xs = [i + (j - (len(labels) - 1) / 2) * width for i in range(len(ks))]
            name = label.replace("`", "") + (" (unavailable)" if missing else "")
            bars = ax.bar(xs, values, width, label=name)
            for bar, v in zip(bars, values, strict=True):
                if v:
                    ax.annotate(
                        f"{v:.1f}" if v < 10 else f"{v:.0f}",
                        (bar.get_x() + bar.get_width() / 2, v),
                        ha="center",
                        va="bottom",
                        fontsize=7,
                    )
        ax.set_xticks(range(len(ks)), [f"K={k}" for k in ks])
        ax.set_ylabel("CPU ms per model call")
        ax.set_title(
            "steady state (first → last request)"
            if which == "steady"
            else "total (start-up and shutdown included)"
        )
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(
        "CPU per model call, whole process tree"
        + (f", {agents} agents × K read-tool turns" if agents else "")
        + f", {where.get('run at', '')}, commit {where.get('commit', '')}\n"
        + where.get("machine", ""),
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- running ------------------------------------------------------------------------------
def _plain_argv(url: str, root: Path, agents: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "benchmarks.swarm_cpu",
        "plain",
        f"{url}/openai/v1",
        str(root / "repo"),
        str(agents),
    ]


def _swarm_argv(run_id: str) -> list[str]:
    return [
        *(sys.executable, "-m", "swarm.cli", "launch", "swarm.yaml", "--repo", "repo"),
        *("--run-id", run_id, "--no-dashboard"),
    ]


def _stop_swarm(root: Path) -> None:
    """Stop the embedded Redis a run left under ``root`` and forget its state."""
    from swarm.blackboard.connection import stop_embedded

    stop_embedded(root / ".swarm")
    shutil.rmtree(root / ".swarm", ignore_errors=True)


def _clean_env() -> dict[str, str]:
    drop = ("REDIS_URL", "RAY_ADDRESS", "OPENAI_BASE_URL", "OPENAI_API_KEY")
    return {k: v for k, v in os.environ.items() if k not in drop}


def prepare_peers(peers: Iterable[Peer]) -> dict[str, tuple[Path | None, str, str | None]]:
    """Each peer's venv python, versions shown in the doc, and why it is unavailable."""
    out: dict[str, tuple[Path | None, str, str | None]] = {}
    for peer in peers:
        pins = ", ".join(peer.pins)
        try:
            python = venv_python(peer)
            found = installed_versions(peer, python)
            out[peer.name] = (python, ", ".join(f"{d} {v}" for d, v in found.items()), None)
        except PeerUnavailable as exc:
            out[peer.name] = (None, pins, str(exc))
        print(f"peer {peer.label}: {out[peer.name][1]} {out[peer.name][2] or ''}", flush=True)
    return out


def compare_all(
    agents: int,
    turns: int,
    repeat: int,
    packing: str,
    peers: dict[str, tuple[Path | None, str, str | None]],
) -> list[Outcome]:
    import openai

    plain = Outcome(PLAIN, f"openai {openai.__version__}")
    import swarm

    ours = Outcome(SWARM, f"swarm {swarm.__version__}")
    peer_outcomes = {
        p.name: Outcome(p.label, peers[p.name][1], unavailable=peers[p.name][2])
        for p in PEERS
        if p.name in peers
    }

    def verify(record: Path) -> None:
        check_log(read_log(record), agents, turns)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        swarm_cpu.write_workload(root, agents, turns, packing)
        script = root / "stub.json"
        record = root / "requests.jsonl"
        stub, url = swarm_cpu._stub(script, record)
        env = _clean_env()
        # the plain loop and the peers run elsewhere than swarm: measure() counts the
        # embedded Redis found under its cwd's .swarm/ as part of the contestant
        elsewhere = root / "elsewhere"
        elsewhere.mkdir()
        try:
            for rnd in range(repeat):
                plain.runs.append(
                    swarm_cpu.measure(
                        PLAIN,
                        _plain_argv(url, root, agents),
                        elsewhere,
                        {**env, "PYTHONPATH": str(PROJECT_ROOT)},
                        record,
                        verify,
                    )
                )
                for p in PEERS:
                    python = peers.get(p.name, (None, "", None))[0]
                    if python is None:
                        continue
                    peer_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
                    argv = [str(python), "-W", "ignore", str(p.path)]
                    argv += [f"{url}/openai/v1", str(root / "repo"), str(agents), str(turns)]
                    peer_outcomes[p.name].runs.append(
                        swarm_cpu.measure(p.label, argv, elsewhere, peer_env, record, verify)
                    )
                run_env = {**env, "OPENAI_BASE_URL": f"{url}/openai/v1", "OPENAI_API_KEY": "bench"}
                ours.runs.append(
                    swarm_cpu.measure(
                        SWARM,
                        _swarm_argv(f"peers-{agents}-{turns}-{rnd}"),
                        root,
                        run_env,
                        record,
                        verify,
                    )
                )
                _stop_swarm(root)  # each round's swarm starts cold, its Redis counted once
                print(f"K={turns} round {rnd + 1}/{repeat} done", flush=True)
        finally:
            stub.terminate()
            stub.wait()
            _stop_swarm(root)
    return [plain, *peer_outcomes.values(), ours]


def run(
    agents: int,
    turns_list: list[int],
    repeat: int,
    packing: str = "auto",
    chart: Path | None = CHART,
    where: dict[str, str] | None = None,
    quick: bool = False,
) -> str:
    """Measure every K; write the chart (unless ``chart`` is None); the doc section."""
    from benchmarks.run import provenance

    where = where or provenance()
    peers = prepare_peers(PEERS)
    by_k: dict[int, list[Outcome]] = {}
    for turns in turns_list:
        by_k[turns] = compare_all(agents, turns, repeat, packing, peers)
        print("\n".join(table(turns, by_k[turns])), flush=True)
    if chart is not None:
        write_chart(by_k, chart, where, agents)
    return section(agents, by_k, where, repeat, packing, quick)


def sizes(quick: bool) -> tuple[int, list[int], int]:
    """Agents, the Ks, and the repeats of `make bench` (or `make bench-quick`)."""
    return (4, [10], 1) if quick else (10, [10, 30, 100], 3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="4 agents, K=10, once")
    parser.add_argument("--agents", type=int)
    parser.add_argument("--turns", type=int, nargs="*")
    parser.add_argument("--repeat", type=int)
    parser.add_argument("--per-actor", default="auto", help="swarm's agents_per_actor")
    parser.add_argument("--no-write", action="store_true", help="print, do not write docs")
    parser.add_argument("--chart", type=Path, help=f"where the PNG goes (default {CHART})")
    args = parser.parse_args()
    agents, turns, repeat = sizes(args.quick)
    agents = args.agents or agents
    turns = args.turns or turns
    repeat = args.repeat or repeat
    chart = args.chart or (None if args.no_write else CHART)
    text = run(agents, turns, repeat, args.per_actor, chart, quick=args.quick)
    print(text)
    if not args.no_write:
        from benchmarks.run import replace_markdown

        replace_markdown(TITLE, text)


if __name__ == "__main__":
    main()
