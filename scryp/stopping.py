"""How a long-running command learns to stop: SIGINT (Ctrl-C) or SIGTERM (systemd, kill), or
an optional bounded run time."""

from __future__ import annotations

import asyncio
import signal


def stop_event(duration_s: float | None = None) -> asyncio.Event:
    """An event set by SIGINT or SIGTERM, or after ``duration_s`` (call inside the loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if duration_s is not None:
        loop.call_later(duration_s, stop.set)
    return stop
