"""Clients' bad HTTP logged once per client per interval, without a traceback.

aiohttp logs at ERROR with a full traceback, from ``aiohttp.server``, every request it cannot
parse (bad chunk sizes, oversized headers, a body that does not decompress) and every client
that went away in the middle of sending its body (ConnectionResetError: e.g. one that gave up
on a paused server): the sender's fault or choice, not ours, and a flood of them costs more to
log than to refuse. This filter turns each into one WARNING line, at most once per client
address per ``interval_s``, and counts the rest (protocol §9.9). A traceback from any other
logger is left alone: that one is ours.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from aiohttp.http_exceptions import HttpProcessingError

CLIENTS_TRACKED_MAX = 4_096
INTERVAL_S_DEFAULT = 60.0


class ThrottledClientErrors(logging.Filter):
    def __init__(
        self,
        interval_s: float = INTERVAL_S_DEFAULT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.clock = clock
        self.suppressed = 0
        self._last: OrderedDict[str, float] = OrderedDict()  # client -> when last logged

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith("Error handling request"):
            return True
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            what = "malformed HTTP"
        elif isinstance(error, ConnectionResetError):
            what = "connection lost mid-request"
        else:
            return True  # an exception from our own handler: our bug, logged in full
        client = str(record.args[0]) if isinstance(record.args, tuple) and record.args else "?"
        now = self.clock()
        last = self._last.get(client)
        if last is not None and now - last < self.interval_s:
            self.suppressed += 1
            return False
        self._last[client] = now
        self._last.move_to_end(client)
        while len(self._last) > CLIENTS_TRACKED_MAX:
            self._last.popitem(last=False)
        record.msg = "%s from %s: %s (logged once a %.0f s per client)"
        record.args = (what, client, _one_line(error), self.interval_s)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info = record.exc_text = None
        return True


def _one_line(error: BaseException | None) -> str:
    text = " ".join(str(error).split()) if error is not None else "unknown"
    return f"{type(error).__name__}: {text}"[:200] if error is not None else text


def install(interval_s: float = INTERVAL_S_DEFAULT) -> ThrottledClientErrors:
    """Put the filter on aiohttp's server logger (idempotent per process)."""
    logger = logging.getLogger("aiohttp.server")
    for existing in logger.filters:
        if isinstance(existing, ThrottledClientErrors):
            return existing
    throttle = ThrottledClientErrors(interval_s)
    logger.addFilter(throttle)
    return throttle
