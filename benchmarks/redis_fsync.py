"""What `appendfsync everysec` (the embedded Redis' setting) saves over `always`, on one
turn's writes: the blackboard's STORE_TURN (a ~4 KB message appended to the session,
usage and agent hashes, an event in the stream: RPUSH + HINCRBY + HSET + XADD in one
script) and the same writes as a plain MULTI pipeline.

    python -m benchmarks.redis_fsync [--quick]

Both policies run on the same embedded server (switched with CONFIG SET), in
alternating blocks, in a state folder on the project's disk (not a tmpfs); the figures
are medians. Writes (or replaces) its section of docs/benchmarks.md; `make bench`
includes it."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # the checkout: docs/, .swarm/

TITLE = "Redis fsync policy (embedded Redis, one turn's writes)"
NOTE = (
    "Latency of one awaited turn write (median), on the embedded server with its append-"
    "only file on {fs}: `appendfsync everysec` (what the embedded Redis uses) against "
    "`always` (an fsync before every reply), switched with CONFIG SET on the same server "
    "in alternating blocks of {block}. *STORE_TURN*: `Blackboard.record_turn` with a "
    "{kb} KB message (RPUSH, HINCRBYFLOAT, HSET, XADD in one Lua script); *pipeline*: "
    "HSET + XADD + RPUSH of the same size in one MULTI. What `always` would buy: see "
    "docs/reliability.md, Redis durability."
)
MESSAGE_BYTES = 4096
BLOCK = 25


def filesystem_of(path: Path) -> str:
    """The type of the filesystem holding `path` (from /proc/mounts), e.g. ext4."""
    best, kind = "", "an unknown filesystem"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    target = str(path.resolve())
    for line in mounts:
        parts = line.split()
        if len(parts) >= 3 and target.startswith(parts[1]) and len(parts[1]) > len(best):
            best, kind = parts[1], parts[2]
    return kind


async def _measure(url: str, rounds: int) -> dict[str, dict[str, float]]:
    import redis.asyncio as aioredis

    from swarm.blackboard.board import Blackboard

    board = Blackboard(url, "fsync-bench")
    admin = aioredis.Redis.from_url(url)
    text = "x" * (MESSAGE_BYTES - 64)
    msg = {"role": "assistant", "content": [{"type": "text", "text": text}]}
    usage = {"input_tokens": 1000, "output_tokens": 50, "usd": 0.01, "turns": 1}
    samples: dict[str, dict[str, list[float]]] = {
        policy: {"store_turn": [], "pipeline": []} for policy in ("everysec", "always")
    }

    async def store_turn() -> None:
        await board.record_turn(
            "a",
            "t",
            [msg],
            usage=usage,
            agent_fields={"turns_task": 1},
            events=[("model_turn", {"turn": 1})],
        )

    async def pipeline() -> None:
        pipe = board.r.pipeline(transaction=True)
        pipe.hset(board.k.agent("b"), mapping={"turns_task": 1, "status": "working"})
        pipe.xadd(board.k.events, {"type": "model_turn", "data": "{}"}, maxlen=10_000)
        pipe.rpush(board.k.session("t2"), text)
        await pipe.execute()

    try:
        for i in range(rounds + 1):  # the first round warms up and is not counted
            for policy in ("everysec", "always") if i % 2 else ("always", "everysec"):
                await admin.config_set("appendfsync", policy)
                for name, fn in (("store_turn", store_turn), ("pipeline", pipeline)):
                    for _ in range(BLOCK):
                        t = time.perf_counter()
                        await fn()
                        if i:
                            samples[policy][name].append(time.perf_counter() - t)
        await admin.config_set("appendfsync", "everysec")
    finally:
        await admin.aclose()
        await board.close()
    return {
        policy: {name: statistics.median(s) * 1e6 for name, s in by.items()}
        for policy, by in samples.items()
    }


def bench_fsync(rounds: int) -> list[tuple[str, str]]:
    from swarm.blackboard.connection import ensure_state_dir, open_redis, stop_embedded

    base = ensure_state_dir(PROJECT_ROOT / ".swarm")
    with tempfile.TemporaryDirectory(prefix="bench-fsync-", dir=base) as tmp:
        folder = Path(tmp)
        handle = open_redis(folder)
        try:
            us = asyncio.run(_measure(handle.url, rounds))
        finally:
            handle.close()
            stop_embedded(folder)
    rows = []
    for name, label in (("store_turn", "STORE_TURN"), ("pipeline", "pipeline")):
        every, always = us["everysec"][name], us["always"][name]
        rows += [
            (f"{label}, appendfsync everysec", f"{every:.0f} µs"),
            (f"{label}, appendfsync always", f"{always:.0f} µs"),
            (f"{label}: ratio always / everysec", f"{always / every:.2f}"),
        ]
    return rows


def note() -> str:
    fs = filesystem_of(PROJECT_ROOT)
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    return f"Measured {when} (`python -m benchmarks.redis_fsync`). " + NOTE.format(
        fs=fs, block=BLOCK, kb=MESSAGE_BYTES // 1024
    )


def write_section(rows: list[tuple[str, str]]) -> str:
    """Replace (or append) this benchmark's section of docs/benchmarks.md."""
    from benchmarks.run import replace_section

    return replace_section(TITLE, note(), rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args()
    print(write_section(bench_fsync(4 if args.quick else 20)))


if __name__ == "__main__":
    main()
