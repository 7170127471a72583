"""One Raft server as a pure state machine: messages and ticks in, ``Ready`` batches out.

Owns: roles and terms (Raft §5.1), elections (§5.2, §5.4.1) preceded by a PreVote
round (Raft thesis §9.6), replication and commitment (paper §5.3, §5.4.2), the leader's
no-op at the start of its term (paper §8), batching of proposals, sealing rounds, compaction
to and catch-up from sealed rounds (paper §7), and check-quorum (thesis §6.2: a leader that
cannot reach a majority steps down). "Raft paper" is Ongaro and Ousterhout's extended paper,
"Raft thesis" Ongaro's dissertation; "protocol §N" is docs/protocol.md.

Never sees the network, the disk, the clock or global randomness: time arrives as ``now_ms``
in ``tick``; randomness is the ``random.Random`` passed in; output waits in a ``Ready``.

Invariants:
- at most one vote per term, persisted before the vote is sent (``Ready`` contract);
- a leader never overwrites or deletes entries in its own log (Leader Append-Only, §5.3);
- a leader commits only entries of its own term by counting replicas (Raft §5.4.2);
- the seals in any leader's log are consecutive rounds, because each new seal is numbered
  from the last seal already in that log and a committed log is a prefix of leaders' logs;
- ``step``/``tick``/``propose``/``restore``/``compact`` are never called while a ``Ready``
  is outstanding (between ``ready()`` and ``advance()``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from enum import StrEnum

from scryp.core.raft.config import RaftConfig
from scryp.core.raft.entries import (
    TX_BYTES,
    Entry,
    NoOp,
    Payload,
    Payments,
    Seal,
    SnapshotMeta,
    encoded_entry_bytes,
)
from scryp.core.raft.log import RaftLog
from scryp.core.raft.messages import (
    AppendEntries,
    AppendResponse,
    CatchUp,
    Message,
    RequestVote,
    VoteResponse,
)
from scryp.core.raft.progress import Progress, ProgressState
from scryp.core.raft.quorum import committed_index, vote_lost, vote_won
from scryp.core.raft.ready import HardState, Ready
from scryp.errors import MalformedInput, invariant


class Role(StrEnum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"  # "would you vote for me?" (Raft thesis §9.6); same term
    CANDIDATE = "candidate"
    LEADER = "leader"


class ProposeResult(StrEnum):
    QUEUED = "queued"  # in the leader's batch; commitment is not promised (leader may fail)
    NOT_LEADER = "not leader"  # ask ``leader_id`` instead, if known
    QUEUE_FULL = "queue full"  # back-pressure: ``proposals_pending_max`` reached


class RaftNode:
    """A Raft server's core. Create with ``RaftNode(config, rng, now_ms, ...)`` from storage."""

    def __init__(
        self,
        config: RaftConfig,
        rng: random.Random,
        *,
        now_ms: int,
        hard_state: HardState,
        snapshot: SnapshotMeta,
        entries: Sequence[Entry] = (),
    ) -> None:
        """Start from durable state: a fresh server passes the genesis round and no entries."""
        self.config = config
        self.id = config.server_id
        self._rng = rng
        self.now_ms = now_ms
        self.term = hard_state.term
        self.voted_for = hard_state.voted_for
        self.log = RaftLog(snapshot, entries, hard_state.committed)
        invariant(snapshot.term <= self.term or self.term == 0, "snapshot from a future term")
        self.role = Role.FOLLOWER
        self.leader_id: int | None = None
        self._persisted = hard_state
        self._messages: list[Message] = []
        self._snapshot_to_persist: SnapshotMeta | None = None
        self._catch_up: SnapshotMeta | None = None
        self._offered: SnapshotMeta | None = None  # newest round the driver can serve
        self._catch_up_sent: dict[int, SnapshotMeta] = {}  # the round named to each peer
        self._votes: dict[int, bool] = {}
        self._progress: dict[int, Progress] = {}
        self._pending_payments: list[bytes] = []
        self._ready_outstanding = False
        self._election_deadline_ms = 0
        self._leader_heard_ms: int | None = None  # when a leader last reached us (lease)
        self._heartbeat_deadline_ms = 0
        self._quorum_check_deadline_ms = 0
        self._reset_election_deadline()

    # -- inputs --------------------------------------------------------------------------

    def tick(self, now_ms: int) -> None:
        """Advance the injected clock; fires elections, heartbeats, batches and seals."""
        self._check_no_ready()
        invariant(now_ms >= self.now_ms, "the injected clock went backwards")
        gap_ms = now_ms - self.now_ms
        self.now_ms = now_ms
        if gap_ms >= self.config.tick_gap_ms_max:
            # Our own loop stalled: what the others sent meanwhile is still in our inbox, so
            # the gap is not their silence. As etcd counts ticks, not time, the timers stand
            # still while we do not run (protocol §7.6).
            self._election_deadline_ms += gap_ms
            self._quorum_check_deadline_ms += gap_ms
        if self.role is not Role.LEADER:
            if now_ms >= self._election_deadline_ms:
                self._pre_campaign()
            return
        self._flush_proposals()
        self._maybe_seal()
        if now_ms >= self._quorum_check_deadline_ms:
            self._check_quorum()
            if self.role is not Role.LEADER:
                return
        if now_ms >= self._heartbeat_deadline_ms:
            self._heartbeat_deadline_ms = now_ms + self.config.heartbeat_interval_ms
            self._broadcast_heartbeat()

    def step(self, message: Message) -> None:
        """Handle one message from a peer. Raises ``MalformedInput`` if it is not for us."""
        self._check_no_ready()
        if message.target != self.id or message.source not in self.config.peers:
            raise MalformedInput(f"message {message.source}->{message.target} is not for us")
        if message.term > self.term:
            if _is_pre_vote_not_a_term(message):
                pass  # Raft thesis §9.6: a pre-vote (or a grant of one) changes nobody's term
            else:
                # Raft §5.1: a higher term makes anyone a follower. Only appends and catch-ups
                # come from a leader; a vote request's sender is merely a candidate.
                is_from_leader = isinstance(message, AppendEntries | CatchUp)
                self._become_follower(message.term, message.source if is_from_leader else None)
        elif message.term < self.term:
            if isinstance(message, AppendEntries | CatchUp):
                # Tell a stale leader our term so it steps down (Raft §5.1).
                self._send(AppendResponse(self.term, self.id, message.source, False, 0))
            elif isinstance(message, RequestVote) and message.pre_vote:
                # Tell a lagging pre-candidate our term, so it stops asking (Raft thesis §9.6).
                self._send(VoteResponse(self.term, self.id, message.source, False, True))
            return
        match message:
            case RequestVote():
                self._on_request_vote(message)
            case VoteResponse():
                self._on_vote_response(message)
            case AppendEntries():
                self._on_append_entries(message)
            case AppendResponse():
                self._on_append_response(message)
            case CatchUp():
                self._on_catch_up(message)

    def propose(self, txs: Sequence[bytes]) -> ProposeResult:
        """Queue payments for the next batch entry (leader only)."""
        self._check_no_ready()
        if self.role is not Role.LEADER:
            return ProposeResult.NOT_LEADER
        for tx in txs:
            if len(tx) != TX_BYTES:
                raise MalformedInput(f"a payment is {TX_BYTES} bytes, got {len(tx)}")
        if len(self._pending_payments) + len(txs) > self.config.proposals_pending_max:
            return ProposeResult.QUEUE_FULL
        self._pending_payments.extend(txs)
        # A full entry's worth goes out now; a partial batch waits for the next tick.
        if len(self._pending_payments) >= self.config.payments_per_entry_max:
            self._flush_proposals()
        return ProposeResult.QUEUED

    def compact(self, snapshot: SnapshotMeta) -> None:
        """The driver has applied and stored round ``snapshot.round``: drop the log before it."""
        self._check_no_ready()
        if snapshot.index <= self.log.snapshot.index:
            return
        self.log.compact(snapshot)
        self._snapshot_to_persist = snapshot

    def offer(self, snapshot: SnapshotMeta) -> None:
        """The driver holds round ``snapshot.round`` durably and can serve it (Raft §7).

        A follower behind our compaction point is then told to catch up from this round
        rather than from the compaction point: the entries after it are still in our log, so
        the follower does not chase a compaction point that moves on while it fetches.
        """
        self._check_no_ready()
        if self._offered is None or snapshot.index > self._offered.index:
            self._offered = snapshot

    def _catch_up_target(self) -> SnapshotMeta:
        """The newest offered round our log still connects to, else the compaction point."""
        offered = self._offered
        if offered is not None and self._still_connects(offered):
            return offered
        return self.log.snapshot

    def _still_connects(self, snapshot: SnapshotMeta) -> bool:
        """Whether our log holds everything after ``snapshot`` (so a follower can go on)."""
        log = self.log
        return (
            log.snapshot.index <= snapshot.index <= log.applied
            and log.term_at(snapshot.index) == snapshot.term
        )

    def restore(self, snapshot: SnapshotMeta) -> bool:
        """Round ``snapshot.round`` arrived (from the swarm): start the log from it (Raft §7).

        Call once the round's files are stored and their hash checked against
        ``snapshot.state_root``; load them into the state machine only if this returns True.
        False, changing nothing, if the log has meanwhile committed up to or past that round,
        or if we lead (a leader holds every committed entry, so it never needs a round).
        """
        self._check_no_ready()
        if self.role is Role.LEADER or snapshot.index <= self.log.committed:
            return False
        self.log.restore(snapshot)
        self._snapshot_to_persist = snapshot
        if self._catch_up is not None and self._catch_up.index <= snapshot.index:
            self._catch_up = None
        if self.leader_id is not None and self.role is Role.FOLLOWER:
            self._send(AppendResponse(self.term, self.id, self.leader_id, True, snapshot.index))
        return True

    # -- outputs -------------------------------------------------------------------------

    def has_ready(self) -> bool:
        return bool(
            self._messages
            or self._snapshot_to_persist is not None
            or self._catch_up is not None
            or self.log.stable_index < self.log.last_index
            or self.log.applied < self.log.committed
            or self._hard_state() != self._persisted
        )

    def ready(self) -> Ready:
        """Take the pending batch. Follow the order in ``ready.py``, then call ``advance``."""
        self._check_no_ready()
        hard_state = self._hard_state()
        applied = self.log.applied
        apply_stop = min(self.log.committed, applied + self.config.committed_entries_per_ready_max)
        ready = Ready(
            hard_state=hard_state if hard_state != self._persisted else None,
            snapshot=self._snapshot_to_persist,
            entries=tuple(self.log.unstable_entries()),
            messages=tuple(self._messages),
            committed=tuple(self.log.slice(applied + 1, apply_stop + 1)),
            catch_up=self._catch_up,
        )
        self._messages = []
        self._snapshot_to_persist = None
        self._catch_up = None
        self._ready_outstanding = True
        return ready

    def advance(self, ready: Ready) -> None:
        """The driver persisted, sent and applied everything in ``ready``."""
        invariant(self._ready_outstanding, "advance without an outstanding ready")
        self._ready_outstanding = False
        if ready.hard_state is not None:
            self._persisted = ready.hard_state
        if ready.entries:
            self.log.stable_index = max(self.log.stable_index, ready.entries[-1].index)
        if ready.committed:
            invariant(ready.committed[0].index == self.log.applied + 1, "apply gap")
            self.log.applied = ready.committed[-1].index

    # -- elections (Raft §5.2, PreVote: Raft thesis §9.6) ------------------------------

    def _pre_campaign(self) -> None:
        """Ask whether we could win before disturbing anyone with a new term (Raft thesis §9.6)."""
        self._start_election(Role.PRE_CANDIDATE)

    def _campaign(self) -> None:
        """Raft §5.2: a new term, our own vote, and a vote request to every peer."""
        self.term += 1
        self.voted_for = self.id
        self._start_election(Role.CANDIDATE)

    def _start_election(self, role: Role) -> None:
        pre_vote = role is Role.PRE_CANDIDATE
        self.role = role
        self.leader_id = None
        self._progress.clear()
        self._pending_payments.clear()
        self._votes = {self.id: True}
        self._reset_election_deadline()
        if vote_won(1, self.config.majority):  # a quorum of one
            if pre_vote:
                self._campaign()
            else:
                self._become_leader()
            return
        # A pre-vote asks about the term we would take; a vote is for the term we took.
        term = self.term + 1 if pre_vote else self.term
        for peer in self.config.peers:
            self._send(
                RequestVote(term, self.id, peer, self.log.last_index, self.log.last_term, pre_vote)
            )

    def _on_request_vote(self, message: RequestVote) -> None:
        if message.pre_vote:
            self._on_pre_vote(message)
            return
        # Raft §5.2: one vote per term, first come first served; §5.4.1: only for a candidate whose
        # log is at least as up-to-date as ours, so a leader always holds every committed entry.
        granted = self.voted_for in (None, message.source) and self.log.is_up_to_date(
            message.last_log_index, message.last_log_term
        )
        if granted:
            self.voted_for = message.source
            self._reset_election_deadline()
        self._send(VoteResponse(self.term, self.id, message.source, granted))

    def _on_pre_vote(self, message: RequestVote) -> None:
        # Raft thesis §9.6: grant if the candidate could win: its term would be newer, its log up
        # to date, and we have not heard from a live leader within the minimum election
        # timeout (otherwise a server that merely lost touch could depose a working leader).
        in_lease = self.role is Role.LEADER or (
            self._leader_heard_ms is not None
            and self.leader_id is not None
            and self.now_ms - self._leader_heard_ms < self.config.election_timeout_ms_min
        )
        granted = (
            message.term > self.term
            and not in_lease
            and self.log.is_up_to_date(message.last_log_index, message.last_log_term)
        )
        term = message.term if granted else self.term
        self._send(VoteResponse(term, self.id, message.source, granted, True))

    def _on_vote_response(self, message: VoteResponse) -> None:
        if message.pre_vote:
            if self.role is not Role.PRE_CANDIDATE:
                return
            if message.granted and message.term != self.term + 1:
                return  # a grant from an earlier pre-vote round
        elif self.role is not Role.CANDIDATE:
            return
        self._votes[message.source] = message.granted
        granted = sum(self._votes.values())
        rejected = len(self._votes) - granted
        if vote_won(granted, self.config.majority):
            if self.role is Role.PRE_CANDIDATE:
                self._campaign()
            else:
                self._become_leader()
        elif vote_lost(rejected, len(self.config.servers), self.config.majority):
            self._become_follower(self.term, None)

    def _become_follower(self, term: int, leader_id: int | None) -> None:
        invariant(term >= self.term, "becoming follower of an older term")
        if term > self.term:
            self.term = term
            self.voted_for = None
        self.role = Role.FOLLOWER
        self.leader_id = leader_id
        self._progress.clear()
        # Queued payments were never in the log: their clients time out and retry elsewhere.
        self._pending_payments.clear()
        self._reset_election_deadline()

    def _become_leader(self) -> None:
        invariant(self.role is Role.CANDIDATE, "only a candidate becomes leader")
        self.role = Role.LEADER
        self.leader_id = self.id
        next_index = self.log.last_index + 1
        self._progress = {peer: Progress(next_index=next_index) for peer in self.config.peers}
        self._heartbeat_deadline_ms = self.now_ms + self.config.heartbeat_interval_ms
        self._quorum_check_deadline_ms = self.now_ms + self.config.check_quorum_interval_ms
        # Raft §8: a no-op of the new term lets the leader commit (and learn) everything before it,
        # since Raft §5.4.2 forbids committing older terms' entries by counting replicas.
        self._append(NoOp())

    def _reset_election_deadline(self) -> None:
        timeout_ms = self._rng.randrange(
            self.config.election_timeout_ms_min, self.config.election_timeout_ms_max
        )
        self._election_deadline_ms = self.now_ms + timeout_ms

    def _check_quorum(self) -> None:
        active = 1 + sum(progress.recently_active for progress in self._progress.values())
        for progress in self._progress.values():
            progress.recently_active = False
        self._quorum_check_deadline_ms = self.now_ms + self.config.check_quorum_interval_ms
        if active < self.config.majority:
            self._become_follower(self.term, None)

    # -- replication, follower side (Raft §5.3) -------------------------------------------

    def _on_append_entries(self, message: AppendEntries) -> None:
        self._refuse_a_second_leader(message)
        self._become_follower(self.term, message.source)
        self._leader_heard_ms = self.now_ms
        log = self.log
        if message.prev_log_index < log.committed:
            # Everything up to our commit index matches any leader's log (Raft §5.4.3).
            self._reply_append(message.source, True, log.committed)
            return
        if log.term_at(message.prev_log_index) != message.prev_log_term:
            self._reply_append(message.source, False, self._reject_hint(message))
            return
        match_index = log.merge(message.prev_log_index, message.entries)
        log.commit_to(min(message.leader_commit, match_index))
        self._reply_append(message.source, True, match_index)

    def _reject_hint(self, message: AppendEntries) -> int:
        """Where the leader should probe next: skip our entries that cannot match.

        Terms only grow along a log, so at any index <= prev_log_index the leader's term is
        <= prev_log_term; our entries there with a larger term are certain mismatches.
        """
        log = self.log
        hint = min(message.prev_log_index - 1, log.last_index)
        while hint > log.committed:
            term = log.term_at(hint)
            if term is not None and term <= message.prev_log_term:
                break
            hint -= 1
        return hint

    def _reply_append(self, leader: int, success: bool, match_index: int) -> None:
        self._send(AppendResponse(self.term, self.id, leader, success, match_index))

    def _on_catch_up(self, message: CatchUp) -> None:
        self._refuse_a_second_leader(message)
        self._become_follower(self.term, message.source)
        self._leader_heard_ms = self.now_ms
        snapshot = message.snapshot
        if snapshot.index <= self.log.committed:
            self._reply_append(message.source, True, self.log.committed)
        elif self.log.term_at(snapshot.index) == snapshot.term:
            # We hold the seal entry itself, so the prefix matches (Log Matching, §5.3).
            self.log.commit_to(snapshot.index)
            self._reply_append(message.source, True, snapshot.index)
        else:
            # Raft §7: our log cannot be repaired by appends; ask the driver to load the round.
            self._catch_up = snapshot

    # -- replication, leader side (Raft §5.3, §5.4.2) --------------------------------------

    def _on_append_response(self, message: AppendResponse) -> None:
        if self.role is not Role.LEADER:
            return
        progress = self._progress[message.source]
        progress.recently_active = True
        if message.success:
            if message.match_index > self.log.last_index:
                raise MalformedInput(f"s{message.source} claims entries we never sent")
            if progress.acknowledge(message.match_index):
                self._maybe_commit()
            if progress.state is ProgressState.PROBE or (
                progress.state is ProgressState.SNAPSHOT
                and progress.match_index >= progress.snapshot_index
            ):
                progress.become_replicate()
        elif progress.state is not ProgressState.SNAPSHOT:
            if message.match_index < progress.match_index:
                return  # a stale rejection: a later success already told us more
            progress.become_probe()
            progress.next_index = max(message.match_index + 1, progress.match_index + 1)
        self._send_append(message.source, allow_empty=False)

    def _maybe_commit(self) -> bool:
        matches = [progress.match_index for progress in self._progress.values()]
        matches.append(self.log.last_index)
        candidate = committed_index(matches, self.config.majority)
        # Raft §5.4.2: only an entry of the current term is committed by counting replicas;
        # earlier entries are committed with it, by Log Matching.
        if candidate > self.log.committed and self.log.term_at(candidate) == self.term:
            return self.log.commit_to(candidate)
        return False

    def _append(self, payload: Payload) -> None:
        entry = Entry(self.term, self.log.last_index + 1, self.now_ms, payload)
        self.log.append([entry])
        self._maybe_commit()  # a single-server quorum commits on its own
        for peer in self.config.peers:
            self._send_append(peer, allow_empty=False)

    def _flush_proposals(self) -> None:
        pending = self._pending_payments
        per_entry = self.config.payments_per_entry_max
        while pending:
            batch, pending[:] = pending[:per_entry], pending[per_entry:]
            self._append(Payments(tuple(batch)))

    def _maybe_seal(self) -> None:
        """Append ``seal(r+1)`` when the clock crosses a round boundary since the last seal."""
        interval_ms = self.config.round_interval_ms
        last_round, last_stamp_ms = self.log.last_seal()
        if self.now_ms // interval_ms > last_stamp_ms // interval_ms:
            self._append(Seal(last_round + 1))

    def _broadcast_heartbeat(self) -> None:
        for peer, progress in self._progress.items():
            if progress.state is ProgressState.SNAPSHOT:
                # The catch-up message may have been lost; repeating it is harmless.
                # Repeat the round we named (while our log still connects to it): naming a
                # newer one each time would have the follower chase it.
                target = self._catch_up_sent.get(peer)
                if target is None or not self._still_connects(target):
                    target = self._catch_up_target()
                self._catch_up_sent[peer] = target
                self._send(CatchUp(self.term, self.id, peer, target))
                progress.snapshot_index = target.index
                continue
            if progress.state is ProgressState.PROBE:
                progress.probe_sent = False
            elif len(progress.inflight) >= self.config.messages_inflight_max:
                # No acknowledgement for a full window: assume losses and re-probe.
                progress.become_probe()
            self._send_append(peer, allow_empty=True)

    def _send_append(self, peer: int, allow_empty: bool) -> None:
        progress = self._progress[peer]
        if progress.state is ProgressState.SNAPSHOT:
            return
        if progress.state is ProgressState.PROBE and progress.probe_sent:
            return
        if (
            progress.state is ProgressState.REPLICATE
            and len(progress.inflight) >= self.config.messages_inflight_max
        ):
            return
        log = self.log
        if progress.next_index > log.last_index and not allow_empty:
            return
        prev_index = progress.next_index - 1
        prev_term = log.term_at(prev_index)
        if prev_term is None:
            # Raft §7: what it needs is compacted; tell it to catch up from our latest round.
            invariant(prev_index < log.snapshot.index, "prev index beyond our log")
            target = self._catch_up_target()
            self._catch_up_sent[peer] = target
            progress.become_snapshot(target.index)
            self._send(CatchUp(self.term, self.id, peer, target))
            return
        entries = self._entries_for_message(progress.next_index)
        self._send(
            AppendEntries(self.term, self.id, peer, prev_index, prev_term, entries, log.committed)
        )
        if progress.state is ProgressState.PROBE:
            progress.probe_sent = True
        elif entries:
            progress.next_index = entries[-1].index + 1
            progress.inflight.append(entries[-1].index)

    def _entries_for_message(self, start: int) -> tuple[Entry, ...]:
        """Up to ``entries_per_message_max`` entries within ``message_bytes_max`` (>= 1)."""
        stop = min(self.log.last_index + 1, start + self.config.entries_per_message_max)
        entries = self.log.slice(start, stop)
        budget_bytes = self.config.message_bytes_max
        for count, entry in enumerate(entries):
            budget_bytes -= encoded_entry_bytes(entry) + 4
            if budget_bytes < 0 and count > 0:
                return tuple(entries[:count])
        return tuple(entries)

    # -- helpers ---------------------------------------------------------------------------

    def _refuse_a_second_leader(self, message: AppendEntries | CatchUp) -> None:
        """Election Safety (Raft §5.2) makes this impossible among correct servers: a peer that
        claims to lead our term is broken; refuse its message rather than crash on it."""
        if self.role is Role.LEADER:
            raise MalformedInput(f"s{message.source} claims to lead term {self.term}, as we do")

    def _send(self, message: Message) -> None:
        self._messages.append(message)

    def _hard_state(self) -> HardState:
        return HardState(self.term, self.voted_for, self.log.committed)

    def _check_no_ready(self) -> None:
        invariant(not self._ready_outstanding, "input while a Ready is outstanding")


def _is_pre_vote_not_a_term(message: Message) -> bool:
    """A pre-vote request, or a grant of one, carries a term nobody is in yet (Raft thesis §9.6)."""
    match message:
        case RequestVote(pre_vote=True):
            return True
        case VoteResponse(pre_vote=True, granted=True):
            return True
        case _:
            return False
