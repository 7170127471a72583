"""Messages between Raft servers: a closed set of frozen, slotted dataclasses.

Owns: the vocabulary of the agreement protocol. Every message names its ``term``, its
``source`` and its ``target`` (server ids, indices into the ``.keys`` quorum list).
Never subclass these; dispatch with ``match``. Byte layouts live in ``codec.py``.

- ``RequestVote``/``VoteResponse``: leader election (Raft §5.2, restriction §5.4.1). With
  ``pre_vote`` set they are the PreVote round (Raft thesis §9.6): "would you vote for me in
  ``term``?", asked without anyone changing term, so a server cut off from the others cannot
  inflate its term and depose a healthy leader when it returns.
- ``AppendEntries``/``AppendResponse``: log replication and heartbeats (Raft §5.3); a rejection
  carries a hint so the leader skips a whole divergent suffix at once instead of one entry
  per round trip.
- ``CatchUp``: the leader's "catch up from round r" (the InstallSnapshot of Raft §7, carrying only
  the round's metadata: the bytes come through the torrent swarm, not from the leader).
"""

from __future__ import annotations

from dataclasses import dataclass

from scryp.core.raft.entries import Entry, SnapshotMeta


@dataclass(frozen=True, slots=True)
class RequestVote:
    term: int  # for a pre-vote: the term the sender would campaign in (its term + 1)
    source: int
    target: int
    last_log_index: int
    last_log_term: int
    pre_vote: bool = False


@dataclass(frozen=True, slots=True)
class VoteResponse:
    term: int  # a granted pre-vote echoes the request's term; otherwise the voter's term
    source: int
    target: int
    granted: bool
    pre_vote: bool = False


@dataclass(frozen=True, slots=True)
class AppendEntries:
    term: int
    source: int
    target: int
    prev_log_index: int
    prev_log_term: int
    entries: tuple[Entry, ...]
    leader_commit: int


@dataclass(frozen=True, slots=True)
class AppendResponse:
    """Success: the follower's log matches the leader's up to ``match_index``.

    Rejection: no match at the leader's ``prev_log_index``; ``match_index`` is then a hint,
    an index at or below which the leader should retry (Raft §5.3, "the leader decrements
    nextIndex"; the hint skips every entry the follower already knows cannot match).
    """

    term: int
    source: int
    target: int
    success: bool
    match_index: int


@dataclass(frozen=True, slots=True)
class CatchUp:
    """Your log is behind my compaction point: load round ``snapshot.round`` (Raft §7)."""

    term: int
    source: int
    target: int
    snapshot: SnapshotMeta


Message = RequestVote | VoteResponse | AppendEntries | AppendResponse | CatchUp
