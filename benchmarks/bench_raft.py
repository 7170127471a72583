"""Committed-entry throughput of the Raft core alone (issue 4), in CPU time.

Method: 3 or 5 ``RaftNode``s in one process over a perfect in-memory network (every frame is
encoded and decoded by the real codec, delivered in order at the next step, never lost), with a
no-op state machine, so the figure is Raft's own cost: elections aside, proposing, batching,
framing, appending, acknowledging, committing and handing entries out to apply. Each step the
leader gets ``payments_per_step`` 140-byte payments (opaque bytes: no signatures are made or
checked here; the ledger's cost is measured by its own benchmark), virtual time moves 1 ms,
and every node's Ready is drained in the persist-send-apply-advance order (persisting is a
list append). CPU time is ``time.process_time()`` around the measured steps only.

Baselines, measured in the same run with the same steps and batches:
- **1 server**: the same Raft core with a quorum of one (no message, no acknowledgement): what
  proposing, logging, committing and applying cost without replication;
- **no consensus**: the same entries (same ``Entry`` objects, same payments) streamed by the
  leader to N - 1 followers as AppendEntries frames through the same codec, each follower
  decoding and appending them: the wire work replication cannot avoid, with no
  acknowledgements, terms, log matching or commit tracking (primary-backup without safety);
- **signatures**: one core's ed25519 verification rate over real signed payments, the cost
  each payment pays once on every server (``scryp.core.ledger.precheck_all``).

    .venv/bin/python benchmarks/bench_raft.py [--steps 3000] [--servers 3 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

from scryp.core.ledger import precheck_all
from scryp.core.raft.codec import decode_message, encode_message
from scryp.core.raft.config import RaftConfig
from scryp.core.raft.entries import Entry, Payments, SnapshotMeta
from scryp.core.raft.messages import AppendEntries
from scryp.core.raft.node import ProposeResult, RaftNode, Role
from scryp.core.raft.ready import HardState
from scryp.core.tx import Transaction
from scryp.crypto import KeyPair

GENESIS = SnapshotMeta(0, 0, 0, 0, b"\x00" * 32)


@dataclass(frozen=True, slots=True)
class Figures:
    path: str  # "raft", or a baseline: "raft, 1 server", "no consensus"
    servers: int
    payments_per_step: int
    payments_per_entry_max: int
    cpu_s: float
    entries: int
    payments: int

    @property
    def outcome(self) -> str:
        return "delivered (not committed)" if self.path == "no consensus" else "committed"

    def line(self) -> str:
        return (
            f"{self.path}: servers {self.servers}, {self.payments_per_step} payments/ms offered, "
            f"<= {self.payments_per_entry_max} per entry: {self.entries} entries "
            f"({self.payments} payments) {self.outcome} in {self.cpu_s:.2f} s CPU = "
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
        "raft" if servers > 1 else "raft, 1 server",
        servers,
        payments_per_step,
        payments_per_entry_max,
        cpu_s,
        applied["entries"],
        applied["payments"],
    )


def stream(servers: int, steps: int, payments_per_step: int) -> Figures:
    """Baseline: the leader's entries framed by the codec and sent to N - 1 followers, who
    decode and append them; nothing is acknowledged, committed or checked."""
    followers = range(1, servers)
    leader_log: list[Entry] = []
    logs: list[list[Entry]] = [[] for _ in range(servers)]
    wire: deque[bytes] = deque()
    batch = tuple([bytes(140)] * payments_per_step)
    applied = {"entries": 0, "payments": 0}
    started_s = time.process_time()
    for step in range(1, steps + 1):
        entry = Entry(1, step, step, Payments(batch))
        leader_log.append(entry)  # "persist"
        for target in followers:
            frame = AppendEntries(1, 0, target, step - 1, 1, (entry,), step - 1)
            wire.append(encode_message(frame))
        while wire:
            message = decode_message(wire.popleft())
            assert isinstance(message, AppendEntries)
            logs[message.target].extend(message.entries)  # "persist"
        applied["entries"] += 1  # "apply" at the leader
        applied["payments"] += len(entry.payload.txs) if isinstance(entry.payload, Payments) else 0
    cpu_s = time.process_time() - started_s
    assert all(len(logs[f]) == steps for f in followers)
    return Figures(
        "no consensus",
        servers,
        payments_per_step,
        payments_per_step,
        cpu_s,
        applied["entries"],
        applied["payments"],
    )


def verify_rate(count: int = 5_000) -> float:
    """Baseline: one core's ed25519 checks of real signed payments, per second of CPU."""
    payer = KeyPair.from_seed(hashlib.sha256(b"bench raft payer").digest())
    payee = hashlib.sha256(b"bench raft payee").digest()
    txs = [Transaction.create(payer, payee, 1 + n, 1_700_000_000_000 + n) for n in range(count)]
    started_s = time.process_time()
    verdicts = precheck_all(txs)
    cpu_s = time.process_time() - started_s
    assert all(v is None for v in verdicts)
    return count / cpu_s


def main() -> None:
    parser = argparse.ArgumentParser(description="Raft core throughput (CPU time)")
    parser.add_argument("--steps", type=int, default=3_000, help="virtual milliseconds")
    parser.add_argument("--servers", type=int, nargs="+", default=[3, 5])
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    load_before = os.getloadavg()
    figures: list[Figures] = []
    shapes = ((1, 1), (10, 1_024), (100, 1_024))
    for payments_per_step, per_entry in shapes:  # baseline: a quorum of one
        figures.append(run(1, args.steps, payments_per_step, per_entry))
        print(figures[-1].line(), flush=True)
    for servers in args.servers:
        for payments_per_step, per_entry in shapes:
            figures.append(run(servers, args.steps, payments_per_step, per_entry))
            print(figures[-1].line(), flush=True)
            figures.append(stream(servers, args.steps, payments_per_step))  # baseline
            print(figures[-1].line(), flush=True)
    verify_per_cpu_s = verify_rate()
    load_after = os.getloadavg()
    print(f"signatures (baseline): {verify_per_cpu_s:,.0f} payments/s of one core's CPU")
    print(f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    if args.json is not None:
        report = {
            "steps": args.steps,
            "loadavg_before": load_before,
            "loadavg_after": load_after,
            "verify_per_cpu_s": verify_per_cpu_s,
            "figures": [asdict(f) for f in figures],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
