"""The server's log sink: the logging call never waits for the handler's write; records
reach the handlers they were meant for; a full queue drops; stop puts the handlers back."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from swarm.server.logsink import LogSink


class Gate(logging.Handler):
    """A handler whose write waits until the gate opens (a pipe nobody reads)."""

    def __init__(self) -> None:
        super().__init__()
        self.open = threading.Event()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.open.wait(10)
        self.lines.append(record.getMessage())


@pytest.fixture
def access() -> Iterator[tuple[logging.Logger, Gate]]:
    logger = logging.getLogger("uvicorn.access")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    for h in saved[0]:
        logger.removeHandler(h)
    gate = Gate()
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, gate
    gate.open.set()
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


def test_logging_does_not_wait_for_the_write(access: tuple[logging.Logger, Gate]) -> None:
    logger, gate = access
    logger.handlers[:] = [gate]  # only (pytest's capture joins in each test phase)
    sink = LogSink(size=100)
    sink.start()
    try:
        done = threading.Event()

        def log_all() -> None:
            for i in range(50):
                logger.info("request %d", i)
            done.set()

        threading.Thread(target=log_all, daemon=True).start()
        assert done.wait(5), "a logging call waited for the blocked handler"
        assert gate.lines == []
        gate.open.set()
    finally:
        sink.stop(timeout=5)
    assert gate.lines == [f"request {i}" for i in range(50)]
    assert sink.dropped == 0
    assert logger.handlers == [gate]  # put back


def test_a_full_queue_drops_and_counts(access: tuple[logging.Logger, Gate]) -> None:
    logger, gate = access
    logger.handlers[:] = [gate]  # only (pytest's capture joins in each test phase)
    sink = LogSink(size=10)
    sink.start()
    try:
        for i in range(40):
            logger.info("request %d", i)
        # the writer took at most one record off the queue before it blocked
        assert sink.dropped >= 40 - 10 - 1
        gate.open.set()
    finally:
        sink.stop(timeout=5)
    assert len(gate.lines) == 40 - sink.dropped
    assert gate.lines[0] == "request 0"
