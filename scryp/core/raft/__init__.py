"""Raft (Ongaro & Ousterhout, "In Search of an Understandable Consensus Algorithm", 2014) as a
sans-IO core: the servers agree on one log of payment batches and round seals.

Modules, each with one job: ``entries`` (what the log holds), ``messages`` and ``codec`` (what
servers say, and its bytes), ``log`` (one server's log), ``progress`` and ``quorum`` (the
leader's bookkeeping), ``config`` (limits), ``ready`` (the driver contract), ``node`` (the
state machine that ties them together).

Citations: "Raft §N" is a section of that paper (extended version); "Raft thesis §N" of
Ongaro's dissertation ("Consensus: Bridging Theory and Practice", 2014: PreVote §9.6,
check-quorum §6.2); "protocol §N" is ``docs/protocol.md``.
"""

from scryp.core.raft.config import RaftConfig
from scryp.core.raft.entries import Entry, NoOp, Payments, Seal, SnapshotMeta
from scryp.core.raft.messages import (
    AppendEntries,
    AppendResponse,
    CatchUp,
    Message,
    RequestVote,
    VoteResponse,
)
from scryp.core.raft.node import ProposeResult, RaftNode, Role
from scryp.core.raft.ready import HardState, Ready

__all__ = [
    "AppendEntries",
    "AppendResponse",
    "CatchUp",
    "Entry",
    "HardState",
    "Message",
    "NoOp",
    "Payments",
    "ProposeResult",
    "RaftConfig",
    "RaftNode",
    "Ready",
    "RequestVote",
    "Role",
    "Seal",
    "SnapshotMeta",
    "VoteResponse",
]
