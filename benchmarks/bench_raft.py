"""Committed-entry throughput of the Raft core alone (issue 4), in CPU time.

Method: 3 or 5 ``RaftNode``s in one process over a perfect in-memory network (every frame is
encoded and decoded by the real codec, delivered in order at the next step, never lost), with a
no-op state machine, so the figure is Raft's own cost: elections aside, proposing, batching,
framing, appending, acknowledging, committing and handing entries out to apply. Each step the
leader gets ``payments_per_step`` 140-byte payments (opaque bytes: no signatures are made or
checked here; the ledger's cost is measured by its own benchmark), virtual time moves 1 ms,
and every node's Ready is drained in the persist-send-apply-advance order (persisting is a
list append). CPU time is ``time.process_time()`` around the measured steps only.

    .venv/bin/python benchmarks/bench_raft.py [--steps 3000] [--servers 3 5]
"""

from __future__ import annotations

import argparse
import random
import time
from collections import deque
from dataclasses import dataclass

from scryp.core.raft.codec import decode_message, encode_message
from scryp.core.raft.config import RaftConfig
from scryp.core.raft.entries import Payments, SnapshotMeta
from scryp.core.raft.node import ProposeResult, RaftNode, Role
from scryp.core.raft.ready import HardState

GENESIS = SnapshotMeta(0, 0, 0, 0, b"\x00" * 32)


@dataclass(frozen=True, slots=True)
class Figures:
    servers: int
    payments_per_step: int
    payments_per_entry_max: int
    cpu_s: float
    entries: int
    payments: int

    def line(self) -> str:
        return (
            f"servers {self.servers}, {self.payments_per_step} payments/ms offered, "
            f"<= {self.payments_per_entry_max} per entry: {self.entries} entries "
            f"({self.payments} payments) committed in {self.cpu_s:.2f} s CPU = "
            f"{self.entries / self.cpu_s:,.0f} entries/s, {self.payments / self.cpu_s:,.0f} "
            "payments/s of CPU"
        )


def make_nodes(servers: int, payments_per_entry_max: int) -> list[RaftNode]:
    ids = tuple(range(servers))
    return [
        RaftNode(
            RaftConfig(
                server_id=i,
                servers=ids,
                round_interval_ms=1_000,
                payments_per_entry_max=payments_per_entry_max,
                proposals_pending_max=1_000_000,
            ),
            random.Random(i),
            now_ms=0,
            hard_state=HardState(0, None, 0),
            snapshot=GENESIS,
        )
        for i in ids
    ]


def run(servers: int, steps: int, payments_per_step: int, payments_per_entry_max: int) -> Figures:
    nodes = make_nodes(servers, payments_per_entry_max)
    ids = tuple(range(servers))
    disks: list[list[object]] = [[] for _ in ids]
    wire: deque[bytes] = deque()
    applied = {"entries": 0, "payments": 0}

    def drain(node: RaftNode) -> None:
        while node.has_ready():
            ready = node.ready()
            disks[node.id].extend(ready.entries)  # "persist"
            wire.extend(encode_message(m) for m in ready.messages)
            if node.role is Role.LEADER:
                for entry in ready.committed:
                    applied["entries"] += 1
                    if isinstance(entry.payload, Payments):
                        applied["payments"] += len(entry.payload.txs)
            node.advance(ready)

    def deliver() -> None:
        while wire:
            message = decode_message(wire.popleft())
            target = nodes[message.target]
            target.step(message)
            drain(target)

    now_ms = 0
    while not any(node.role is Role.LEADER for node in nodes):  # the first election
        now_ms += 1
        for node in nodes:
            node.tick(now_ms)
            drain(node)
        deliver()
    leader = next(node for node in nodes if node.role is Role.LEADER)
    payment = bytes(140)
    batch = [payment] * payments_per_step
    applied["entries"] = applied["payments"] = 0
    started_s = time.process_time()
    for _ in range(steps):
        now_ms += 1
        result = leader.propose(batch)
        if result is not ProposeResult.QUEUED:
            raise RuntimeError(f"proposal refused: {result}")
        for node in nodes:
            node.tick(now_ms)
            drain(node)
        deliver()
    cpu_s = time.process_time() - started_s
    if leader.role is not Role.LEADER:
        raise RuntimeError("leadership changed during the benchmark")
    return Figures(
        servers,
        payments_per_step,
        payments_per_entry_max,
        cpu_s,
        applied["entries"],
        applied["payments"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Raft core throughput (CPU time)")
    parser.add_argument("--steps", type=int, default=3_000, help="virtual milliseconds")
    parser.add_argument("--servers", type=int, nargs="+", default=[3, 5])
    args = parser.parse_args()
    for servers in args.servers:
        for payments_per_step, per_entry in ((1, 1), (10, 1_024), (100, 1_024)):
            print(run(servers, args.steps, payments_per_step, per_entry).line(), flush=True)


if __name__ == "__main__":
    main()
