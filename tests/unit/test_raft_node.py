"""The Raft core against the paper's sentences (etcd's raft_paper_test style), one at a time.

Method: a tiny synchronous harness (no faults, no clock: each node's time is set by hand)
delivers messages through an optional filter, persists and applies every Ready in order.
Each test ends with the paper section it checks.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pytest

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
from scryp.errors import ConfigError, InvariantViolated, MalformedInput

GENESIS = SnapshotMeta(index=0, term=0, round=0, stamp_ms=0, state_root=b"\x00" * 32)
TX = b"\x01" * 140
Filter = Callable[[Message], Message | None]


@dataclass
class Disk:
    hard_state: HardState = field(default_factory=lambda: HardState(0, None, 0))
    snapshot: SnapshotMeta = GENESIS
    entries: list[Entry] = field(default_factory=list)


@dataclass
class Net:
    size: int
    round_interval_ms: int = 10**9
    entries_per_message_max: int = 64
    # These tests jump the clock in big steps as a shortcut, not as stalls (protocol §7.6).
    tick_gap_ms_max: int = 10**9
    nodes: dict[int, RaftNode] = field(default_factory=dict)
    disks: dict[int, Disk] = field(default_factory=dict)
    applied: dict[int, list[Entry]] = field(default_factory=dict)
    readies: dict[int, list[Ready]] = field(default_factory=dict)
    queue: list[Message] = field(default_factory=list)
    now_ms: int = 0

    def __post_init__(self) -> None:
        for server in range(self.size):
            self.disks[server] = Disk()
            self.start(server)

    def config(self, server: int) -> RaftConfig:
        return RaftConfig(
            server_id=server,
            servers=tuple(range(self.size)),
            election_timeout_ms_min=100,
            election_timeout_ms_max=200,
            heartbeat_interval_ms=20,
            round_interval_ms=self.round_interval_ms,
            entries_per_message_max=self.entries_per_message_max,
            payments_per_entry_max=4,
            proposals_pending_max=8,
            tick_gap_ms_max=self.tick_gap_ms_max,
        )

    def start(self, server: int) -> None:
        disk = self.disks[server]
        self.nodes[server] = RaftNode(
            self.config(server),
            random.Random(server),
            now_ms=self.now_ms,
            hard_state=disk.hard_state,
            snapshot=disk.snapshot,
            entries=list(disk.entries),
        )
        self.applied[server] = []
        self.readies[server] = []

    def process(self, server: int) -> None:
        node = self.nodes[server]
        while node.has_ready():
            ready = node.ready()
            disk = self.disks[server]
            if ready.hard_state is not None:
                disk.hard_state = ready.hard_state
            if ready.snapshot is not None:
                offset = ready.snapshot.index - disk.snapshot.index
                keep = 0 < offset <= len(disk.entries) and (
                    disk.entries[offset - 1].term == ready.snapshot.term
                )
                disk.entries = disk.entries[offset:] if keep else []
                disk.snapshot = ready.snapshot
            if ready.entries:
                del disk.entries[ready.entries[0].index - disk.snapshot.index - 1 :]
                disk.entries.extend(ready.entries)
            self.queue.extend(ready.messages)
            self.applied[server].extend(ready.committed)
            self.readies[server].append(ready)
            node.advance(ready)

    def tick(self, server: int, advance_ms: int = 0) -> None:
        self.now_ms += advance_ms
        self.nodes[server].tick(self.now_ms)
        self.process(server)

    def campaign(self, server: int, keep: Filter | None = None) -> None:
        """Let 300 ms pass, so every lease expires; ``server`` campaigns, the others' timeouts
        are lost (their messages dropped); run the election to the end."""
        self.now_ms += 300
        for other, node in self.nodes.items():
            if other != server:
                node.tick(self.now_ms)
                self.process(other)
        self.queue.clear()
        self.tick(server)
        self.deliver(keep)

    def deliver(self, keep: Filter | None = None) -> None:
        for _ in range(10_000):
            if not self.queue:
                return
            message = self.queue.pop(0)
            if keep is not None:
                kept = keep(message)
                if kept is None:
                    continue
                message = kept
            if message.target in self.nodes:
                self.nodes[message.target].step(message)
                self.process(message.target)
        raise AssertionError("messages never stopped")

    def leader(self) -> int:
        leaders = [s for s, node in self.nodes.items() if node.role is Role.LEADER]
        assert len(leaders) == 1, leaders
        return leaders[0]


def role_of(net: Net, server: int) -> Role:
    """A function, so that mypy does not narrow ``role`` across steps that change it."""
    return net.nodes[server].role


def only_between(*servers: int) -> Filter:
    return lambda m: m if m.source in servers and m.target in servers else None


def test_first_election_and_no_op() -> None:
    net = Net(3)
    net.campaign(0)
    assert net.leader() == 0
    leader = net.nodes[0]
    assert leader.term == 1
    # §8: the leader's first entry of its term is a no-op, committed and applied everywhere.
    assert [e.payload for e in net.applied[0]] == [NoOp()]
    net.tick(0, advance_ms=20)  # a heartbeat carries the commit index to the followers
    net.deliver()
    assert all(net.applied[s] == net.applied[0] for s in range(3))
    # Reference: §5.2, §8.


def test_a_vote_is_persisted_in_the_same_ready_that_sends_it() -> None:
    net = Net(3)
    net.tick(0, advance_ms=300)
    (pre_vote,) = net.readies[0]
    assert pre_vote.hard_state is None  # §9.6: asking changes no durable state
    assert {(type(m), m.term) for m in pre_vote.messages} == {(RequestVote, 1)}
    net.deliver(lambda m: m if isinstance(m, RequestVote | VoteResponse) else None)
    campaign = net.readies[0][1]
    assert campaign.hard_state == HardState(term=1, voted_for=0, committed=0)
    assert {type(m) for m in campaign.messages} == {RequestVote}
    for voter in (1, 2):
        granted_pre_vote, vote = net.readies[voter]
        assert granted_pre_vote.hard_state is None
        assert granted_pre_vote.messages == (VoteResponse(1, voter, 0, True, True),)
        assert vote.hard_state == HardState(term=1, voted_for=0, committed=0)
        assert vote.messages == (VoteResponse(1, voter, 0, True),)
    # Reference: §5.2 and Figure 2 ("persistent state ... updated before responding to RPCs").


def test_pre_vote_keeps_an_isolated_server_from_inflating_its_term() -> None:
    net = Net(3)
    net.campaign(0)
    net.tick(0, advance_ms=20)
    net.deliver()
    for _ in range(5):  # s2 is cut off and keeps timing out
        net.tick(2, advance_ms=300)
        net.queue.clear()
    assert net.nodes[2].term == 1 and role_of(net, 2) is Role.PRE_CANDIDATE
    # Back in touch, it asks s1, which heard from the leader within the lease: refused.
    net.tick(0, advance_ms=20)
    net.deliver(lambda m: None if m.source == 2 or m.target == 2 else m)
    net.tick(2, advance_ms=300)
    net.deliver(lambda m: m if {m.source, m.target} == {1, 2} else None)
    assert net.nodes[1].term == 1 and role_of(net, 0) is Role.LEADER
    assert net.nodes[2].term == 1
    # Reference: §9.6 (preventing disruptions when a server rejoins the cluster).


def test_one_vote_per_term_and_the_election_restriction() -> None:
    net = Net(3)
    net.campaign(0)
    net.tick(0, advance_ms=20)
    net.deliver()
    node = net.nodes[1]
    # A candidate whose log is behind (term 1, index 0 < our last index 1) gets no vote.
    node.step(RequestVote(term=5, source=2, target=1, last_log_index=0, last_log_term=0))
    net.process(1)
    assert net.queue[-1] == VoteResponse(5, 1, 2, False)
    # An up-to-date candidate gets it, and nobody else in that term does.
    node.step(RequestVote(term=6, source=2, target=1, last_log_index=1, last_log_term=1))
    net.process(1)
    assert net.queue[-1] == VoteResponse(6, 1, 2, True)
    node.step(RequestVote(term=6, source=0, target=1, last_log_index=9, last_log_term=6))
    net.process(1)
    assert net.queue[-1] == VoteResponse(6, 1, 0, False)
    # Reference: §5.2 (one vote per term), §5.4.1 (election restriction).


def test_leader_commits_an_older_term_entry_only_through_its_own() -> None:
    """Figure 8: counting replicas of an older term's entry must not commit it."""
    net = Net(5, entries_per_message_max=1)
    net.campaign(0)
    net.tick(0, advance_ms=20)
    net.deliver()
    assert net.nodes[0].propose([TX]) is ProposeResult.QUEUED
    net.tick(0, advance_ms=1)  # the batch becomes entry 2 of term 1, reaching s1 only
    net.deliver(only_between(0, 1))
    assert net.nodes[1].log.last_index == 2
    net.start(0)  # s0 crashes and restarts from its disk, a follower again
    votes_only = only_between(2, 3, 4)
    net.campaign(4, keep=lambda m: None if isinstance(m, AppendEntries) else votes_only(m))
    assert role_of(net, 4) is Role.LEADER and net.nodes[4].term == 2  # s4 won without it
    assert net.nodes[4].log.last_term == 2  # ...and holds only its own no-op (2, 2)
    votes_only = only_between(0, 1, 2, 3)
    net.campaign(0, keep=lambda m: None if isinstance(m, AppendEntries) else votes_only(m))
    # s2 and s3 are in term 2 already: no pre-vote for term 2, but s0 learns term 2.
    assert role_of(net, 0) is Role.FOLLOWER and net.nodes[0].term == 2
    net.campaign(0, keep=lambda m: None if isinstance(m, AppendEntries) else votes_only(m))
    assert role_of(net, 0) is Role.LEADER  # term 3: s0 wins with its longer log

    def older_terms_only(m: Message) -> Message | None:
        if m.source == 4 or m.target == 4:
            return None
        if isinstance(m, AppendEntries):
            old = tuple(e for e in m.entries if e.term < 3)
            return replace(m, entries=old)
        return m

    net.deliver(older_terms_only)
    net.tick(0, advance_ms=20)
    net.deliver(older_terms_only)
    leader = net.nodes[0]
    assert leader.role is Role.LEADER and leader.term == 3
    assert sum(net.nodes[s].log.term_at(2) == 1 for s in range(4)) >= 3  # a majority holds it
    assert leader.log.committed == 1  # ...yet it is not committed
    # Its own no-op, once replicated, commits both (Log Matching).
    net.tick(0, advance_ms=20)
    net.deliver(only_between(0, 1, 2, 3))
    for _ in range(3):
        net.tick(0, advance_ms=20)
        net.deliver(only_between(0, 1, 2, 3))
    assert leader.log.committed == 3
    # Reference: §5.4.2 and Figure 8.


def test_batching_limits_and_back_pressure() -> None:
    net = Net(3)
    net.campaign(0)
    leader = net.nodes[0]
    assert leader.propose([TX] * 3) is ProposeResult.QUEUED
    assert leader.log.last_index == 1  # a partial batch waits for the tick
    assert leader.propose([TX] * 5) is ProposeResult.QUEUED  # 8 >= 4 per entry: flushed now
    assert [len(e.payload.txs) for e in leader.log.slice(2, 4) if isinstance(e.payload, Payments)]
    assert leader.log.last_index == 3
    assert leader.propose([TX] * 9) is ProposeResult.QUEUE_FULL  # 8 pending at most
    assert net.nodes[1].propose([TX]) is ProposeResult.NOT_LEADER
    with pytest.raises(MalformedInput):
        leader.propose([b"short"])
    net.process(0)
    net.deliver()
    net.tick(0, advance_ms=20)
    net.deliver()
    payments = [e for e in net.applied[1] if isinstance(e.payload, Payments)]
    assert sum(len(e.payload.txs) for e in payments if isinstance(e.payload, Payments)) == 8
    assert max(len(e.payload.txs) for e in payments if isinstance(e.payload, Payments)) == 4


def test_messages_respect_entries_per_message_max() -> None:
    net = Net(3, entries_per_message_max=2)
    net.campaign(0)
    net.deliver()
    for _ in range(5):
        net.nodes[0].propose([TX])
        net.tick(0, advance_ms=1)
    appends = [m for m in net.queue if isinstance(m, AppendEntries)]
    assert appends and max(len(m.entries) for m in appends) <= 2
    net.deliver()
    net.tick(0, advance_ms=20)
    net.deliver()
    assert net.nodes[1].log.committed == net.nodes[0].log.last_index == 6


def test_seals_one_round_per_boundary_consecutively() -> None:
    net = Net(1, round_interval_ms=1_000)
    net.campaign(0)
    for advance_ms in (400, 700, 5_000, 10, 990):  # crosses at 1000, 6000 (once), 7000
        net.tick(0, advance_ms=advance_ms)
    seals = [e.payload for e in net.applied[0] if isinstance(e.payload, Seal)]
    assert seals == [Seal(1), Seal(2), Seal(3)]
    # Reference: protocol §7.3 (a seal at each round boundary).


def test_restart_from_disk_reapplies_committed_entries() -> None:
    net = Net(3, round_interval_ms=1_000)
    net.campaign(0)
    net.nodes[0].propose([TX])
    net.tick(0, advance_ms=1_000)
    net.deliver()
    net.tick(0, advance_ms=20)
    net.deliver()
    before = list(net.applied[1])
    assert len(before) == 3
    net.start(1)  # a crash: memory is gone, the disk stays
    node = net.nodes[1]
    assert node.term == 1 and node.log.last_index == 3 and node.log.applied == 0
    net.process(1)
    assert net.applied[1] == before
    # Reference: Figure 2 (persistent state), §5.3 (state machine replay).


def test_compaction_then_catch_up_from_a_round() -> None:
    net = Net(3, round_interval_ms=1_000)
    net.campaign(0)
    net.deliver()
    drop_2 = only_between(0, 1)
    for _ in range(3):
        net.nodes[0].propose([TX])
        net.tick(0, advance_ms=1_000)
        net.deliver(drop_2)
        net.tick(0, advance_ms=20)
        net.deliver(drop_2)
    leader = net.nodes[0]
    seal = next(e for e in net.applied[0] if e.payload == Seal(2))
    meta = SnapshotMeta(seal.index, seal.term, 2, seal.stamp_ms, b"\x22" * 32)
    leader.compact(meta)
    net.process(0)
    assert net.disks[0].snapshot == meta
    assert net.disks[0].entries[0].index == meta.index + 1
    net.tick(0, advance_ms=20)
    net.deliver()  # s2 is back: it must be told to catch up from round 2
    follower = net.nodes[2]
    catch_ups = [r.catch_up for r in net.readies[2] if r.catch_up is not None]
    assert catch_ups == [meta]
    assert follower.restore(meta)  # the driver loaded round 2 from the swarm
    net.process(2)
    assert net.disks[2].snapshot == meta
    net.deliver()
    net.tick(0, advance_ms=20)
    net.deliver()
    assert follower.log.committed == leader.log.committed
    assert follower.log.slice(meta.index + 1, follower.log.last_index + 1) == leader.log.slice(
        meta.index + 1, leader.log.last_index + 1
    )
    assert not follower.restore(meta)  # already past it: nothing changes
    # Reference: §7 (InstallSnapshot, here "catch up from round r").


def test_stale_leader_steps_down_and_foreign_messages_are_refused() -> None:
    net = Net(3)
    net.campaign(0)
    net.deliver()
    net.campaign(1, keep=only_between(1, 2))
    assert role_of(net, 1) is Role.LEADER and role_of(net, 0) is Role.LEADER
    net.tick(0, advance_ms=20)  # s0's heartbeat reaches s2, whose reply has term 2
    net.deliver()
    assert role_of(net, 0) is Role.FOLLOWER and net.nodes[0].term == 2
    with pytest.raises(MalformedInput):
        net.nodes[0].step(VoteResponse(term=2, source=1, target=2, granted=True))
    with pytest.raises(MalformedInput):
        net.nodes[0].step(VoteResponse(term=2, source=9, target=0, granted=True))
    # Reference: §5.1 (a server with a smaller term reverts to follower).


def test_check_quorum_deposes_an_isolated_leader() -> None:
    net = Net(3)
    net.campaign(0)
    net.deliver()
    interval_ms = net.nodes[0].config.check_quorum_interval_ms
    for _ in range(interval_ms // 20):  # the votes of its election count for one interval
        net.tick(0, advance_ms=20)
        net.queue.clear()
    assert role_of(net, 0) is Role.LEADER
    for _ in range(interval_ms // 20 + 1):  # then a whole interval of silence
        net.tick(0, advance_ms=20)
        net.queue.clear()
    assert role_of(net, 0) is Role.FOLLOWER


def test_inputs_between_ready_and_advance_are_a_bug() -> None:
    net = Net(1)
    node = net.nodes[0]
    node.tick(500)
    node.ready()
    with pytest.raises(InvariantViolated):
        node.tick(600)


def test_config_limits_are_checked() -> None:
    with pytest.raises(ConfigError):
        RaftConfig(server_id=0, servers=(0, 1), heartbeat_interval_ms=500)
    with pytest.raises(ConfigError):
        RaftConfig(server_id=3, servers=(0, 1, 2))
    with pytest.raises(ConfigError):
        RaftConfig(
            server_id=0, servers=(0,), payments_per_entry_max=10_000, message_bytes_max=1_000
        )


def test_catch_up_for_a_round_whose_seal_we_hold_needs_no_fetch() -> None:
    net = Net(3, round_interval_ms=1_000)
    net.campaign(0)
    net.tick(0, advance_ms=1_000)
    net.deliver()
    seal = net.nodes[1].log.entry(2)
    assert seal.payload == Seal(1)
    meta = SnapshotMeta(seal.index, seal.term, 1, seal.stamp_ms, b"\x01" * 32)
    net.nodes[1].step(CatchUp(term=1, source=0, target=1, snapshot=meta))
    net.process(1)
    assert all(r.catch_up is None for r in net.readies[1])
    assert net.nodes[1].log.committed == 2


def test_a_follower_acknowledges_only_what_the_message_proved() -> None:
    """Entries beyond the message may still diverge: the match is prev + len(entries)."""
    config = Net(3).config(1)
    old = [Entry(1, i, 0, NoOp()) for i in (1, 2, 3)]
    node = RaftNode(
        config,
        random.Random(1),
        now_ms=0,
        hard_state=HardState(term=1, voted_for=None, committed=0),
        snapshot=GENESIS,
        entries=old,
    )
    node.step(
        AppendEntries(
            2, 0, 1, prev_log_index=0, prev_log_term=0, entries=tuple(old[:1]), leader_commit=0
        )
    )
    (response,) = node.ready().messages
    assert response == AppendResponse(term=2, source=1, target=0, success=True, match_index=1)
    # Reference: §5.3 (the leader learns matchIndex only for what it sent).


def test_impossible_claims_from_a_peer_are_refused_not_fatal() -> None:
    net = Net(3)
    net.campaign(0)
    net.deliver()
    leader = net.nodes[0]
    with pytest.raises(MalformedInput):  # another leader in our term
        leader.step(AppendEntries(1, 1, 0, 0, 0, (), 0))
    with pytest.raises(MalformedInput):  # a match beyond anything we sent
        leader.step(AppendResponse(1, 1, 0, True, 99))
    net.tick(0, advance_ms=20)
    net.deliver()
    assert role_of(net, 0) is Role.LEADER and leader.log.committed == 1


def test_catch_up_names_the_newest_offered_round_the_log_still_connects_to() -> None:
    net = Net(3, round_interval_ms=1_000)
    net.campaign(0)
    net.deliver()
    drop_2 = only_between(0, 1)
    for _ in range(4):
        net.tick(0, advance_ms=1_000)
        net.deliver(drop_2)
        net.tick(0, advance_ms=20)
        net.deliver(drop_2)
    leader = net.nodes[0]
    seals = {e.payload.round: e for e in net.applied[0] if isinstance(e.payload, Seal)}
    assert sorted(seals) == [1, 2, 3, 4]

    def meta(round_number: int) -> SnapshotMeta:
        seal = seals[round_number]
        return SnapshotMeta(seal.index, seal.term, round_number, seal.stamp_ms, b"\x07" * 32)

    leader.compact(meta(2))
    leader.offer(meta(3))
    leader.offer(meta(1))  # older than what is offered already: ignored
    net.process(0)
    net.tick(0, advance_ms=20)
    net.deliver()
    catch_ups = [r.catch_up for r in net.readies[2] if r.catch_up is not None]
    assert catch_ups == [meta(3)]  # not the compaction point, round 2
    leader.compact(meta(4))  # round 3 is gone from the log: the compaction point it is
    net.process(0)
    net.tick(0, advance_ms=20)
    net.deliver()
    catch_ups = [r.catch_up for r in net.readies[2] if r.catch_up is not None]
    assert catch_ups[-1] == meta(4)
    # Reference: §7, and protocol §7.9 (catch up from a round the leader can serve).


def _steady(net: Net, duration_ms: int) -> None:
    """Every server ticks every 20 ms; what they send arrives after each step."""
    for _ in range(duration_ms // 20):
        net.now_ms += 20
        for server, node in net.nodes.items():
            node.tick(net.now_ms)
            net.process(server)
        net.deliver()


def _run_without(net: Net, stalled: int, duration_ms: int) -> None:
    """Every server but ``stalled`` ticks every 20 ms; what is sent to it waits in its inbox."""
    held: list[Message] = []
    for _ in range(duration_ms // 20):
        net.now_ms += 20
        for server, node in net.nodes.items():
            if server != stalled:
                node.tick(net.now_ms)
                net.process(server)
        held += [m for m in net.queue if m.target == stalled]
        net.queue = [m for m in net.queue if m.target != stalled]
        net.deliver()
    net.queue = held


@pytest.mark.parametrize("tick_gap_ms_max", [150, 10**9], ids=["stall-aware", "stall-blind"])
def test_a_stall_of_everyone_is_not_taken_for_silence(tick_gap_ms_max: int) -> None:
    """protocol §7.6: a checkpoint round stalls every server's loop at once (the same entry
    seals it everywhere), the followers' a little shorter. Time no loop ran must not read as
    a dead leader (followers campaign) or dead followers (the leader steps down): no
    election follows. Blind to stalls (timers counted in time, as before), the same stall
    forces one."""
    net = Net(3, tick_gap_ms_max=tick_gap_ms_max)
    _steady(net, 1_000)
    leader = net.leader()
    term = net.nodes[leader].term
    net.now_ms += 1_000  # nobody's loop ran: a 1 s seal
    _run_without(net, leader, 60)  # the followers' seals ended 60 ms before the leader's
    net.deliver()  # the driver reads what waited in the leader's inbox before it ticks
    net.nodes[leader].tick(net.now_ms)
    net.process(leader)
    _steady(net, 1_000)
    stable = net.leader() == leader and all(node.term == term for node in net.nodes.values())
    assert stable is (tick_gap_ms_max == 150)


@pytest.mark.parametrize("tick_gap_ms_max", [150, 10**9], ids=["stall-aware", "stall-blind"])
def test_a_follower_stalled_alone_does_not_campaign(tick_gap_ms_max: int) -> None:
    """protocol §7.6: one follower's loop stalls while the leader goes on; its first tick
    after the stall must not read the gap as the leader's silence (what the leader sent
    meanwhile waits in its inbox). Blind to stalls, it asks for votes at once."""
    net = Net(3, tick_gap_ms_max=tick_gap_ms_max)
    _steady(net, 1_000)
    stalled = (net.leader() + 1) % 3
    _run_without(net, stalled, 1_000)
    net.nodes[stalled].tick(net.now_ms + 20)  # its first tick after the stall
    net.process(stalled)
    asked = any(isinstance(m, RequestVote) and m.source == stalled for m in net.queue)
    assert asked is (tick_gap_ms_max != 150)
