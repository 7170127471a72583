"""What the HTTP API may see of a server: a small read view plus ``submit`` (docs/api.md).

The API never touches the Raft core, the ledger or the round protocol itself: it asks this
view, which answers from the driver's published state and the round files on disk.
"""

from __future__ import annotations

import asyncio
import mmap
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client.registry import CollectorRegistry

from scryp.core import snapshot
from scryp.core.buckets import BUCKET_BITS, MerkleTree, bucket_of, bucket_range
from scryp.core.certificate import Certificate
from scryp.core.ledger import Reason
from scryp.core.outcomes import Decided
from scryp.core.rounds import RoundInfo
from scryp.core.tx import Transaction
from scryp.errors import MalformedInput, NotAvailable, RemoteError
from scryp.server import state_at
from scryp.server.config import ServerLimits

if TYPE_CHECKING:
    from scryp.server.node import ServerNode


@dataclass(frozen=True, slots=True)
class Balance:
    balance: int
    round: int
    state_root: bytes
    signers: tuple[int, ...]


# A light client reads its balance from the proof's bucket alone (protocol §4.4.6): ~550 bytes
# at 1M accounts, ~5.5 KB at 10M; a bucket past this (a network far larger than §4.4.2 plans
# for) is left to the pieces.
PROOF_RECORDS_BYTES_MAX = 64 * 1024


@dataclass(frozen=True, slots=True)
class Proof:
    """Where an account's bucket sits in a certified round (protocol §4.4.6, stage A)."""

    round: int
    state_root: bytes
    infohash: bytes
    bucket: int
    siblings: tuple[bytes, ...]  # leaf level first
    # The bucket's bytes in the round's ``balances``, [start, end): checkpoint rounds only
    # (the others have no ``balances`` file, protocol §4.4.4).
    start: int | None
    end: int | None
    records: bytes | None = None  # those bytes, unless over PROOF_RECORDS_BYTES_MAX


PROOF_TREES_KEPT = 8  # the newest sealed rounds' trees (4 MB each): the certified one is there


@dataclass(frozen=True, slots=True)
class TxView:
    status: Decided
    certified: bool  # the round closing its batch is certified here


def certificate_signers(certificate: bytes) -> tuple[int, ...]:
    """The servers whose signatures a certificate holds: what a client can check, rather
    than every share this server happened to receive."""
    try:
        return tuple(index for index, _ in Certificate.from_bytes(certificate).signatures)
    except RemoteError:
        return ()  # no certificate (yet)


class ServerView:
    def __init__(self, node: ServerNode) -> None:
        self._node = node
        self._trees: OrderedDict[int, MerkleTree] = OrderedDict()
        self._trees_lock = threading.Lock()  # kept on the event loop, read in threads
        # Accounts with a balance at the newest seal (GET /status): counted by the seal's
        # thread, since the live ledger may be mid-compaction there.
        self.sealed_accounts: int | None = None
        # GET /changes answers by (since, round): rounds are immutable once sealed, and one
        # merge at a time bounds the work a crowd of full syncs causes (protocol §10.4.1).
        self._changes_kept: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._changes_lock = asyncio.Lock()

    @property
    def limits(self) -> ServerLimits:
        return self._node.config.limits

    @property
    def window_ms(self) -> int:
        return self._node.config.window_ms

    def is_checkpoint(self, round_number: int) -> bool:
        """Whether the round's torrent holds the whole balances file (protocol §4.4.4)."""
        return snapshot.is_checkpoint(round_number, self._node.config.checkpoint_every)

    @property
    def network(self) -> bytes:
        return self._node.network

    async def precheck(self, txs: Sequence[Transaction]) -> list[Reason | None]:
        """The stateless checks of payments a client submits (protocol §6.1), in threads;
        those that pass are not checked again when applied here (``verify.Verified``)."""
        return await self._node.verified.taken(txs)

    def submit(self, txs: list[bytes]) -> str | None:
        """Queue prechecked payments; None, or why they cannot be taken now (503)."""
        refusal = self._node.submit(txs)
        if refusal is None:
            self._node.metrics.submitted(txs)
        return refusal

    def refused(self, reason: Reason) -> None:
        """The API refused a payment before queueing it (counted for /metrics)."""
        self._node.metrics.refused_payment(reason)

    @property
    def metrics_registry(self) -> CollectorRegistry:
        return self._node.metrics.registry

    def seeds(self, infohash: bytes) -> bool:
        """Whether this server seeds the torrent (v1 or truncated v2 infohash): its tracker
        answers for those only (protocol §8.6.1)."""
        swarm = self._node.swarm
        return swarm is not None and swarm.has_torrent(infohash)

    def remembers(self, tx_id: bytes) -> bool:
        """Whether the ledger would refuse ``tx_id`` as a replay (protocol §6.2)."""
        driver = self._node.driver
        return driver is not None and driver.ledger.remembers(tx_id)

    def certified(self) -> RoundInfo | None:
        driver = self._node.driver
        return driver.rounds.certified_info() if driver is not None else None

    def balance_at_certified(self, account: bytes) -> Balance | None:
        """The account's balance in the newest certified round (blocking: run in a thread)."""
        info = self.certified()
        if info is None:
            return None
        signers = certificate_signers(info.certificate)
        every = self._node.config.checkpoint_every
        balance = state_at.balance_at(self._node.rounds, info.round, every, account)
        return Balance(balance, info.round, info.state_root, signers)

    def keep_tree(self, round_number: int, tree: MerkleTree) -> None:
        """A sealed round's Merkle tree, for proofs (the newest few only)."""
        with self._trees_lock:
            self._trees[round_number] = tree
            while len(self._trees) > PROOF_TREES_KEPT:
                self._trees.popitem(last=False)

    def _tree_of(self, info: RoundInfo, rebuild: bool) -> MerkleTree | None:
        """The round's tree: kept since its seal, else (``rebuild``) rebuilt once from its
        file (after a restart); None if not kept, or if the file does not give the round's
        root (damaged: no proof)."""
        with self._trees_lock:
            tree = self._trees.get(info.round)
        if tree is None and rebuild:
            every = self._node.config.checkpoint_every
            try:
                tree = MerkleTree.of_file(state_at.flat_at(self._node.rounds, info.round, every))
            except (OSError, MalformedInput):  # pruned meanwhile, or damaged: our fault
                return None
            if tree.root != info.state_root:
                return None
            self.keep_tree(info.round, tree)
        return tree

    def proof(self, account: bytes, round_number: int | None = None) -> Proof | None:
        """What proves the account's balance (§4.4.6) in the newest certified round, or in
        ``round_number`` if this server still keeps its tree (the newest few sealed: an
        older one would cost a whole file's hashing per request). Blocking: run it in a
        thread. None before a certified round; NotAvailable for a round not kept."""
        certified = self.certified()
        if round_number is None or (certified and certified.round == round_number):
            info = certified
        else:
            driver = self._node.driver
            info = driver.rounds.infos.get(round_number) if driver is not None else None
            if info is None:
                raise NotAvailable(f"round {round_number} is not kept here")
        if info is None:
            return None
        tree = self._tree_of(info, rebuild=info is certified)
        if tree is None:
            raise NotAvailable(f"round {info.round}'s tree is not kept here")
        index = bucket_of(account, BUCKET_BITS)
        rounds, every = self._node.rounds, self._node.config.checkpoint_every
        try:
            bucket = state_at.bucket_at(rounds, info.round, every, index)
        except OSError:  # pruned meanwhile
            raise NotAvailable(f"round {info.round}'s files are not kept here") from None
        records = bucket if len(bucket) <= PROOF_RECORDS_BYTES_MAX else None
        start = end = None
        if snapshot.is_checkpoint(info.round, every):
            with open(rounds.path(info.round) / snapshot.BALANCES, "rb") as file:
                if os.fstat(file.fileno()).st_size:
                    with (
                        mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped,
                        memoryview(mapped) as view,
                    ):
                        start, end = bucket_range(view, index, BUCKET_BITS)
                else:
                    start = end = 0
        siblings = tuple(tree.proof(index))
        return Proof(
            info.round, info.state_root, info.infohash, index, siblings, start, end, records
        )

    async def changes(self, since: int, round_number: int) -> bytes | None:
        """The net ``changes`` of rounds since+1..round_number (protocol §10.4.1), from the
        round files; None before a certified round. MalformedInput for a range not after
        ``since`` or too long, RangeTooLarge for one over the byte limit, NotAvailable for a
        round not certified or not held here. Untrusted by the client, which checks the
        certified state root of ``round_number`` after applying it."""
        if round_number <= since:
            raise MalformedInput("round must be after since")
        most = max(self.limits.changes_rounds_max, self._node.config.checkpoint_every)
        if round_number - since > most:
            raise MalformedInput(f"at most {most} rounds at once")
        info = self.certified()
        if info is None:
            return None
        if round_number > info.round:
            raise NotAvailable(f"round {round_number} is not certified here (newest {info.round})")
        key = (since, round_number)
        async with self._changes_lock:
            found = self._changes_kept.get(key)
            if found is None:
                found = await asyncio.to_thread(
                    state_at.changes_between,
                    self._node.rounds,
                    since,
                    round_number,
                    self.limits.changes_bytes_max,
                )
            self._changes_kept[key] = found
            self._changes_kept.move_to_end(key)
            while len(self._changes_kept) > self.limits.changes_answers_kept:
                self._changes_kept.popitem(last=False)
        return found

    def tx(self, tx_id: bytes) -> TxView | None:
        driver = self._node.driver
        found = driver.outcomes.lookup(tx_id) if driver is not None else None
        if found is None:
            return None
        info = self.certified()
        return TxView(found, info is not None and info.round >= found.round)

    def rounds(self, start: int, count_max: int) -> list[RoundInfo]:
        driver = self._node.driver
        if driver is None:
            return []
        infos = [i for n, i in sorted(driver.rounds.infos.items()) if n >= start and i.seeded]
        return infos[:count_max]

    def status(self) -> dict[str, Any]:
        node, driver = self._node, self._node.driver
        raft = driver.raft if driver is not None else None
        newest = driver.newest_sealed if driver is not None else None
        info = self.certified()
        return {
            "network": node.network.hex(),
            "checkpoint_every": node.config.checkpoint_every,
            "server": node.index,
            "public_key": node.key.account_id,
            "role": raft.role.value if raft else "starting",
            "term": raft.term if raft else 0,
            "leader": raft.leader_id if raft else None,
            "round": newest.round if newest else 0,
            # Raft's compaction point: a follower behind it must catch up through the swarm.
            "compacted_round": raft.log.snapshot.round if raft else 0,
            "state_root": newest.state_root.hex() if newest else None,
            "certified_round": info.round if info else None,
            "certified_state_root": info.state_root.hex() if info else None,
            "infohash": info.infohash.hex() if info and info.infohash else None,
            "signers": list(certificate_signers(info.certificate)) if info else [],
            "peers_out": sorted(node.hub.connected_out),
            "peers_in": sorted(node.hub.connected_in),
            "accounts": (
                self.sealed_accounts
                if self.sealed_accounts is not None or driver is None
                else driver.ledger.account_count()  # no seal yet in this process
            ),
            "torrent_port": node.swarm.port if node.swarm else None,
            # Decisions before this stamp are unknown here (a catch-up, or forgotten): GET /tx
            # answers 404 for them rather than guess (protocol §6.5).
            "outcomes_horizon_ms": driver.outcomes.horizon_ms if driver else None,
        }
