"""The kernel's limits that a lab of many hosts outgrows, raised for a run (issue 9, crowd).

Owns: raising ``net.ipv4.neigh.default.gc_thresh1..3`` and ``net.core.netdev_max_backlog`` for
a run and putting the machine's own values back. Why:
- The ARP table is one table for every namespace of the machine, capped by ``gc_thresh3``
  (1,024 by default). A crowd of 200 client hosts, each talking to the DHT node, the servers
  and its swarm peers, needs more entries than that: the kernel logged "arp_cache: neighbor
  table overflow!" and every client that arrived after the first ~125 found no DHT node (76
  of 200 failed).
- Every ARP broadcast on the lab's bridge is copied to every host, and each copy waits in the
  sending CPU's backlog (1,000 packets by default) until the receiving namespace takes it.
  With 200 hosts a 200-client crowd lost ~80,000 packets there (``/proc/net/softnet_stat``):
  ARP answers, DHT queries and TCP segments a real network would have carried. With 1,010
  hosts one broadcast alone overflows it and no host could reach another.
Invariant: the machine's values are saved to ``SAVED_PATH`` before anything is raised, and
``restore`` (run by ``netns.clear``, so also after a crash) puts them back and removes the
file; values are only ever raised.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from scryp.keyfile import atomic_write

NEIGH_DIR = Path("/proc/sys/net/ipv4/neigh/default")
BACKLOG = Path("/proc/sys/net/core/netdev_max_backlog")
THRESHOLDS = ("gc_thresh1", "gc_thresh2", "gc_thresh3")  # the kernel wants 1 ≤ 2 ≤ 3
SAVED_PATH = Path("/run/scryplab-sysctl.json")
ENTRIES_PER_HOST = 64  # a host's neighbours on the bridge: DHT node, servers, swarm peers
BACKLOG_PER_HOST = 50  # copies of a few simultaneous broadcasts to every host


def _paths() -> list[Path]:
    return [NEIGH_DIR / key for key in THRESHOLDS] + [BACKLOG]


def wanted(hosts: int) -> dict[str, int]:
    """Values for ``hosts`` hosts, by sysctl path: every host may know ``ENTRIES_PER_HOST``
    others, and a broadcast's copies to every host fit in the backlog many times over."""
    entries = hosts * ENTRIES_PER_HOST
    thresholds = zip(THRESHOLDS, (entries // 4, entries // 2, entries), strict=True)
    values = {str(NEIGH_DIR / key): value for key, value in thresholds}
    values[str(BACKLOG)] = hosts * BACKLOG_PER_HOST
    return values


def read() -> dict[str, int]:
    return {str(path): int(path.read_text()) for path in _paths()}


def _write(values: dict[str, int]) -> None:
    # gc_thresh3 first when raising, last when lowering: the kernel wants 1 ≤ 2 ≤ 3.
    third = str(NEIGH_DIR / THRESHOLDS[2])
    order = sorted(values, reverse=values[third] >= read()[third])
    for path in order:
        Path(path).write_text(f"{values[path]}\n")


def raise_for(hosts: int) -> dict[str, int]:
    """Raise the limits to at least ``wanted(hosts)``; the values now in force."""
    now = read()
    if not SAVED_PATH.exists():  # a crashed run's file holds the machine's own values
        atomic_write(SAVED_PATH, json.dumps(now).encode())
    target = {path: max(now[path], want) for path, want in wanted(hosts).items()}
    if target != now:
        _write(target)
    return target


def restore() -> None:
    """Put the machine's own values back (no-op when nothing was raised)."""
    if not SAVED_PATH.exists():
        return
    saved = json.loads(SAVED_PATH.read_bytes())
    _write({str(path): int(saved[str(path)]) for path in _paths()})
    with contextlib.suppress(FileNotFoundError):
        os.unlink(SAVED_PATH)
