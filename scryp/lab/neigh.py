"""The kernel's neighbour (ARP) table, sized for the lab's hosts (issue 9, crowd).

Owns: raising ``net.ipv4.neigh.default.gc_thresh1..3`` for a run and putting the machine's
own values back. Why: the ARP table is one table for every namespace of the machine, capped
by ``gc_thresh3`` (1,024 by default). A crowd of 200 client hosts, each talking to the DHT
node, the servers and its swarm peers, needs more entries than that: the kernel logged
"arp_cache: neighbor table overflow!" and every client that arrived after the first ~125
found no DHT node (76 of 200 failed). Invariant: the machine's values are saved to
``SAVED_PATH`` before anything is raised, and ``restore`` (run by ``netns.clear``, so also
after a crash) puts them back and removes the file; values are only ever raised.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from scryp.keyfile import atomic_write

SYSCTL_DIR = Path("/proc/sys/net/ipv4/neigh/default")
KEYS = ("gc_thresh1", "gc_thresh2", "gc_thresh3")
SAVED_PATH = Path("/run/scryplab-neigh.json")
ENTRIES_PER_HOST = 64  # a host's neighbours on the bridge: DHT node, servers, swarm peers


def wanted(hosts: int) -> dict[str, int]:
    """Thresholds for ``hosts`` hosts: every host may know ``ENTRIES_PER_HOST`` others."""
    entries = hosts * ENTRIES_PER_HOST
    return {"gc_thresh1": entries // 4, "gc_thresh2": entries // 2, "gc_thresh3": entries}


def read() -> dict[str, int]:
    return {key: int((SYSCTL_DIR / key).read_text()) for key in KEYS}


def _write(values: dict[str, int]) -> None:
    # gc_thresh3 first when raising, last when lowering: the kernel wants 1 ≤ 2 ≤ 3.
    order = sorted(KEYS, reverse=values["gc_thresh3"] >= read()["gc_thresh3"])
    for key in order:
        (SYSCTL_DIR / key).write_text(f"{values[key]}\n")


def raise_for(hosts: int) -> dict[str, int]:
    """Raise the thresholds to at least ``wanted(hosts)``; the values now in force."""
    now = read()
    if not SAVED_PATH.exists():  # a crashed run's file holds the machine's own values
        atomic_write(SAVED_PATH, json.dumps(now).encode())
    target = {key: max(now[key], want) for key, want in wanted(hosts).items()}
    if target != now:
        _write(target)
    return target


def restore() -> None:
    """Put the machine's own thresholds back (no-op when nothing was raised)."""
    if not SAVED_PATH.exists():
        return
    saved = json.loads(SAVED_PATH.read_bytes())
    _write({key: int(saved[key]) for key in KEYS})
    with contextlib.suppress(FileNotFoundError):
        os.unlink(SAVED_PATH)
