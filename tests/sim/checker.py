"""Safety invariants, checked incrementally after every step of the simulation.

- Election Safety: at most one leader per term (Raft §5.2).
- Log Matching: equal (index, term) means equal entry and equal prefix (§5.3). Checked by
  induction: each persisted (index, term) must always carry the same entry and the same term at
  index - 1, so equal positions have equal predecessors all the way down.
- Leader Completeness: a leader of term T holds every entry committed in a term < T (§5.4).
- State Machine Safety: every server applies the same entry at each index, with the same
  verdicts; every server that seals round r gets the same state root.
- No payment applied twice, across the whole committed history.
- Supply conservation and no double spend: checked by ``Model`` beside each ledger.
- Certificates (protocol §8.4, §10.2): no round is ever certified under two state rootes
  (across all servers, across crashes), or under another hash than the one it was sealed
  with; every certificate a server stores verifies with the client's verifier
  (``verify_certificate``: a true majority of distinct valid signatures of ``.keys``); every
  pointer record published with a certificate passes ``pointer.certified``, and a server's
  certified records never go back to an older round (until it crashes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scryp.core.certificate import Certificate, Statement, verify_certificate
from scryp.core.pointer import PointerRecord, certified
from scryp.core.raft.entries import Entry, SnapshotMeta
from scryp.core.raft.node import Role
from scryp.core.raft.ready import Ready
from scryp.errors import InvariantViolated, RemoteError

from .server import SimServer
from .state_machine import Applied


class SafetyViolation(InvariantViolated):
    """The simulator saw a Raft or ledger safety property fail."""


@dataclass(slots=True)
class Committed:
    entry: Entry
    commit_term: int  # the term in which some server first saw it committed


@dataclass(slots=True)
class Checker:
    network: bytes
    quorum: tuple[bytes, ...]
    certified: dict[int, bytes] = field(default_factory=dict)  # round -> state root
    published: dict[int, int] = field(default_factory=dict)  # server -> newest certified record
    verified: set[tuple[Statement, bytes]] = field(default_factory=set)  # checked once each
    leaders: dict[int, int] = field(default_factory=dict)  # term -> leader id
    positions: dict[tuple[int, int], tuple[Entry, int]] = field(default_factory=dict)
    committed: dict[int, Committed] = field(default_factory=dict)
    applied: dict[int, tuple[Entry, tuple[bool, ...]]] = field(default_factory=dict)
    seals: dict[int, bytes] = field(default_factory=dict)
    accepted: dict[bytes, int] = field(default_factory=dict)  # tx id -> index
    commit_seen: dict[int, int] = field(default_factory=dict)  # server -> commit index seen
    leader_terms: dict[int, int] = field(default_factory=dict)  # server -> term checked
    applied_count: int = 0

    def on_persist(self, server: SimServer, ready: Ready) -> None:
        node = server.node
        assert node is not None
        if ready.entries:
            previous_term = node.log.term_at(ready.entries[0].index - 1)
            if previous_term is None:
                raise SafetyViolation(f"s{server.id} persisted entries after a gap")
            for entry in ready.entries:
                self._check_position(entry, previous_term)
                previous_term = entry.term
        if node.log.committed > self.commit_seen.get(server.id, 0):
            self._record_commits(server)

    def _check_position(self, entry: Entry, previous_term: int) -> None:
        key = (entry.index, entry.term)
        known = self.positions.get(key)
        if known is None:
            self.positions[key] = (entry, previous_term)
        elif known != (entry, previous_term):
            raise SafetyViolation(f"log matching: two different entries at {key}")

    def _record_commits(self, server: SimServer) -> None:
        node = server.node
        assert node is not None
        log = node.log
        start = max(self.commit_seen.get(server.id, 0), log.snapshot.index) + 1
        for index in range(start, log.committed + 1):
            entry = log.entry(index)
            known = self.committed.get(index)
            if known is None:
                self.committed[index] = Committed(entry, node.term)
            elif known.entry != entry:
                raise SafetyViolation(f"state machine safety: two entries committed at {index}")
        self.commit_seen[server.id] = log.committed

    def on_apply(self, server: SimServer, entry: Entry, applied: Applied) -> None:
        self.applied_count += 1
        known = self.applied.get(entry.index)
        record = (entry, applied.verdicts)
        if known is None:
            self.applied[entry.index] = record
        elif known != record:
            raise SafetyViolation(
                f"s{server.id} applied a different entry or verdicts at {entry.index}"
            )
        if applied.sealed_round is not None:
            sealed = self.seals.setdefault(applied.sealed_round, applied.sealed_hash or b"")
            if sealed != applied.sealed_hash:
                raise SafetyViolation(f"round {applied.sealed_round} sealed with two state rootes")
        for tx_id in applied.accepted_ids:
            first = self.accepted.setdefault(tx_id, entry.index)
            if first != entry.index:
                raise SafetyViolation(
                    f"payment {tx_id.hex()[:16]} applied at {first} and again at {entry.index}"
                )

    def on_crash(self, server: SimServer, reason: str) -> None:
        self.commit_seen.pop(server.id, None)
        self.published.pop(server.id, None)

    def on_certificate(self, server: SimServer, round_number: int, data: bytes) -> None:
        assert server.driver is not None
        info = server.driver.rounds.info(round_number)
        if info is None:
            raise SafetyViolation(f"s{server.id} certified round {round_number} it does not know")
        self._check_certified(server, round_number, info.state_root)
        statement = Statement(self.network, round_number, info.state_root, info.infohash_v2)
        if (statement, data) in self.verified:
            return
        try:
            verify_certificate(Certificate.from_bytes(data), statement, self.quorum)
            self.verified.add((statement, data))
        except RemoteError as error:
            raise SafetyViolation(
                f"s{server.id} stored a certificate of round {round_number} that a client "
                f"refuses: {error}"
            ) from None

    def on_publish(self, server: SimServer, record: PointerRecord) -> None:
        if not record.certificate:
            return
        if (record.statement, record.certificate) not in self.verified:
            if not certified(record, self.quorum):
                raise SafetyViolation(f"s{server.id} published round {record.round} miscertified")
            self.verified.add((record.statement, record.certificate))
        self._check_certified(server, record.round, record.state_root)
        newest = self.published.get(server.id, -1)
        if record.round <= newest:
            raise SafetyViolation(
                f"s{server.id} published round {record.round} after round {newest}"
            )
        self.published[server.id] = record.round

    def _check_certified(self, server: SimServer, round_number: int, state: bytes) -> None:
        known = self.certified.setdefault(round_number, state)
        if known != state:
            raise SafetyViolation(f"round {round_number} certified under two state rootes")
        sealed = self.seals.get(round_number)
        if round_number and sealed is not None and sealed != state:
            raise SafetyViolation(
                f"s{server.id} certified round {round_number} under another hash than its seal"
            )

    def on_catch_up(self, server: SimServer, snapshot: SnapshotMeta) -> None:
        sealed = self.seals.get(snapshot.round)
        if sealed is not None and sealed != snapshot.state_root:
            raise SafetyViolation(f"catch-up to round {snapshot.round} with a wrong hash")

    def after_step(self, servers: list[SimServer]) -> None:
        for server in servers:
            node = server.node
            if node is None or node.role is not Role.LEADER:
                continue
            leader = self.leaders.setdefault(node.term, server.id)
            if leader != server.id:
                raise SafetyViolation(f"two leaders in term {node.term}: s{leader}, s{server.id}")
            if self.leader_terms.get(server.id) != node.term:
                self.leader_terms[server.id] = node.term
                self._check_leader_complete(server)

    def _check_leader_complete(self, server: SimServer) -> None:
        node = server.node
        assert node is not None
        log = node.log
        for index in range(log.snapshot.index + 1, max(self.committed, default=0) + 1):
            known = self.committed.get(index)
            if known is None or known.commit_term >= node.term:
                continue
            if index > log.last_index or log.entry(index) != known.entry:
                raise SafetyViolation(
                    f"leader completeness: s{server.id} leads term {node.term} without "
                    f"entry {index} committed in term {known.commit_term}"
                )

    def check_outcomes(self, servers: list[SimServer]) -> None:
        """What a server says became of a payment (GET /tx, protocol §6.5) never lies: it
        says accepted exactly for the payments the log applied. Once at the end, over every
        live server's book (which survived its crashes, from its durable outcome records)."""
        for server in servers:
            driver = server.driver
            if driver is None:
                continue
            for decided in driver.outcomes.decided():
                tx_id = decided.tx_id
                if decided.outcome.accepted != (tx_id in self.accepted):
                    raise SafetyViolation(
                        f"s{server.id} says payment {tx_id.hex()[:16]} was "
                        f"{'accepted' if decided.outcome.accepted else decided.outcome.reason}, "
                        f"the log {'applied' if tx_id in self.accepted else 'never applied'} it"
                    )

    def check_final_logs(self, servers: list[SimServer]) -> None:
        """Log Matching across whole logs, pairwise, once at the end (O(n^2 log))."""
        for server in servers:
            for other in servers:
                if server.node is None or other.node is None or server.id >= other.id:
                    continue
                a, b = server.node.log, other.node.log
                low = max(a.snapshot.index, b.snapshot.index) + 1
                high = min(a.last_index, b.last_index)
                for index in range(high, low - 1, -1):
                    if a.term_at(index) == b.term_at(index):
                        if a.slice(low, index + 1) != b.slice(low, index + 1):
                            raise SafetyViolation(
                                f"log matching: s{server.id} and s{other.id} differ before {index}"
                            )
                        break
