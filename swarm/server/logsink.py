"""The server's log lines leave the event loop. A write to stdout or stderr blocks while
whatever reads them (a pipe nobody drains, a paused terminal) does not read, and a
blocked write on the loop stops every request: uvicorn writes one access line per
request. Each log handler is wrapped so the loop only queues the record (a bounded
queue; a record that does not fit is dropped and counted) and one writer thread writes."""

from __future__ import annotations

import contextlib
import copy
import logging
import queue
import sys
import threading
import time

QUEUE_SIZE = 10_000
# uvicorn's loggers, and the root logger (swarm's modules log through it)
LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access")

Item = tuple[logging.Handler, logging.LogRecord] | None


class Deferred(logging.Handler):
    """Stands in for ``target`` on a logger: queues the record, never waits."""

    def __init__(self, target: logging.Handler, sink: LogSink) -> None:
        super().__init__(target.level)
        self.target, self.sink = target, sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.put((self.target, copy.copy(record)))


class LogSink:
    """``start`` wraps the handlers of ``LOGGERS`` (the root logger, if it has none, gets
    what ``logging.lastResort`` does: WARNING and up to stderr); ``stop`` puts them back
    and lets the writer finish what is queued (a writer stuck on a full pipe is left: a
    daemon thread never holds the process)."""

    def __init__(self, size: int = QUEUE_SIZE) -> None:
        self.queue: queue.Queue[Item] = queue.Queue(size)
        self.dropped = 0
        # (logger, its handler, the stand-in, whether the handler goes back on stop)
        self.swapped: list[tuple[logging.Logger, logging.Handler, Deferred, bool]] = []
        self.thread: threading.Thread | None = None

    def put(self, item: Item) -> None:
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1  # only the event loop's thread logs here; no lock needed

    def start(self) -> None:
        for name in LOGGERS:
            logger = logging.getLogger(name)
            handlers = [(h, True) for h in logger.handlers]
            if not handlers and name == "":
                fallback = logging.StreamHandler(sys.stderr)
                fallback.setLevel(logging.WARNING)
                handlers = [(fallback, False)]
            for h, restore in handlers:
                wrapped = Deferred(h, self)
                logger.removeHandler(h)
                logger.addHandler(wrapped)
                self.swapped.append((logger, h, wrapped, restore))
        self.thread = threading.Thread(target=self._write, name="swarm-log", daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        for logger, original, wrapped, restore in self.swapped:
            logger.removeHandler(wrapped)
            if restore:
                logger.addHandler(original)
        self.swapped = []
        thread, self.thread = self.thread, None
        if thread is not None:
            deadline = time.monotonic() + timeout
            with contextlib.suppress(queue.Full):  # the writer is stuck: leave it
                self.queue.put(None, timeout=timeout)
                thread.join(max(0.0, deadline - time.monotonic()))

    def _write(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            handler, record = item
            handler.handle(record)
