"""Running code on a lab host from a process that lives elsewhere (issue 9).

A network namespace belongs to a thread, not to a process: ``setns(2)`` moves only the
calling thread, and a thread starts in its creator's namespace. So a thread that enters a
host's namespace first and then starts its asyncio loop owns sockets on that host only, and
so do the threads it starts afterwards (the loop's executor, libtorrent's network thread).
This lets one process run many lab clients, each on its own host and address.

Owns: ``enter`` (setns of the calling thread) and ``run_on_host`` (a coroutine run to its
end on a fresh thread inside a host). Invariant: the thread that entered a namespace never
runs anything else afterwards (it ends with its coroutine).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import ctypes.util
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from scryp.errors import LocalError
from scryp.lab import names

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"

_T = TypeVar("_T")


def enter(ns: str) -> None:
    """Move the calling thread into network namespace ``ns`` (one of the lab's)."""
    if not names.is_ours(ns):
        raise LocalError(f"{ns} is not a lab namespace")
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    fd = os.open(f"{NETNS_DIR}/{ns}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise LocalError(f"setns({ns}): {os.strerror(errno)}")
    finally:
        os.close(fd)


def run_on_host(
    ns: str, work: Callable[[], Coroutine[Any, Any, _T]], name: str = ""
) -> concurrent.futures.Future[_T]:
    """Start ``work()`` on a new thread inside ``ns`` with its own event loop; its result
    (or exception) arrives in the returned future."""
    future: concurrent.futures.Future[_T] = concurrent.futures.Future()

    def body() -> None:
        try:
            enter(ns)
            result = asyncio.run(work())
        except BaseException as error:  # handed to the waiter, who decides
            future.set_exception(error)
        else:
            future.set_result(result)

    threading.Thread(target=body, name=name or f"lab-{ns}", daemon=True).start()
    return future
