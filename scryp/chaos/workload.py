"""The chaos run's load and its record: payments, double spends, replays, new accounts, and
everything the servers answered about each (protocol §11.3).

``Workload`` decides what to send next from a seeded generator (no clock: timestamps are
passed in); ``History`` is the record the checker reads. A double-spend group is one funded
account signing three payments that together exceed its balance, each sent to a different
server at once: at most one may be accepted.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from enum import StrEnum

from scryp.core.tx import Transaction
from scryp.crypto import KeyPair

ACCOUNT_FUNDS = 1_000_000
DOUBLE_SPEND_FUNDS = 1_000
DOUBLE_SPEND_COPIES = 3
DOUBLE_SPEND_AMOUNT = 600  # two copies already exceed DOUBLE_SPEND_FUNDS


class Kind(StrEnum):
    FUND = "fund"  # from the faucet, before the load
    PAY = "pay"
    NEW_ACCOUNT = "new-account"  # to a key nobody holds yet
    DOUBLE = "double"  # one copy of a double-spend group
    REPLAY = "replay"  # the bytes of an earlier payment, sent again


@dataclass(frozen=True, slots=True)
class Post:
    """One submission of a payment to one server, and what the server said."""

    server: int
    at_s: float
    http_status: int  # 0: no answer (refused, reset, timed out)
    status: str  # "pending", "rejected", or "" when there was no per-payment answer
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Seen:
    """An outcome a server reported for a payment (``GET /tx``)."""

    server: int
    at_s: float
    status: str  # "accepted" | "rejected"
    reason: str
    round: int
    certified: bool


@dataclass(slots=True)
class Sent:
    tx: Transaction
    kind: Kind
    group: int | None = None  # the double-spend group, if any
    posts: list[Post] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)

    @property
    def certified_outcome(self) -> Seen | None:
        """The first outcome a server reported in a certified round: what a user was told."""
        return next((s for s in self.seen if s.certified), None)


@dataclass(slots=True)
class History:
    sent: dict[bytes, Sent] = field(default_factory=dict)  # by tx id

    def record(self, tx: Transaction, kind: Kind, group: int | None = None) -> Sent:
        entry = self.sent.get(tx.tx_id)
        if entry is None:
            entry = self.sent[tx.tx_id] = Sent(tx, kind, group)
        return entry


@dataclass(frozen=True, slots=True)
class Batch:
    """What to send now: each payment with the server it goes to."""

    kind: Kind
    posts: tuple[tuple[int, Transaction], ...]
    group: int | None = None


def key(seed: int, name: str) -> KeyPair:
    return KeyPair.from_seed(hashlib.sha256(f"chaos-{seed}-{name}".encode()).digest())


@dataclass(slots=True)
class Workload:
    seed: int
    servers: int
    accounts: list[KeyPair]
    double_spenders: list[KeyPair]
    rng: random.Random = field(init=False)
    payees: list[bytes] = field(init=False)
    groups: int = 0
    created: int = 0
    sent: list[Transaction] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(f"chaos-workload-{self.seed}")
        self.payees = [k.public for k in self.accounts]

    @classmethod
    def make(cls, seed: int, servers: int, accounts: int, double_spenders: int) -> Workload:
        return cls(
            seed,
            servers,
            [key(seed, f"account-{i}") for i in range(accounts)],
            [key(seed, f"double-{i}") for i in range(double_spenders)],
        )

    def funding(self, faucet: KeyPair, now_ms: int) -> list[Transaction]:
        """The faucet's payments that fund every account of the run."""
        funds = [(k, ACCOUNT_FUNDS) for k in self.accounts]
        funds += [(k, DOUBLE_SPEND_FUNDS) for k in self.double_spenders]
        return [
            Transaction.create(faucet, k.public, amount, now_ms + i)
            for i, (k, amount) in enumerate(funds)
        ]

    def next(self, now_ms: int) -> Batch:
        """The next thing to send: mostly payments, some new accounts, double spends and
        replays (a double spend needs an unused funded account; without one, a payment)."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.08 and self.groups < len(self.double_spenders):
            return self._double_spend(now_ms)
        if roll < 0.16 and self.sent:
            return Batch(Kind.REPLAY, ((self._server(), rng.choice(self.sent)),))
        payer = rng.choice(self.accounts)
        kind = Kind.PAY
        if roll < 0.26:
            self.created += 1
            payee = key(self.seed, f"new-{self.created}").public
            self.payees.append(payee)
            kind = Kind.NEW_ACCOUNT
        else:
            payee = rng.choice([p for p in self.payees[:64] if p != payer.public])
        tx = Transaction.create(payer, payee, rng.randint(1, 1_000), now_ms)
        self.sent.append(tx)
        return Batch(kind, ((self._server(), tx),))

    def _double_spend(self, now_ms: int) -> Batch:
        payer = self.double_spenders[self.groups]
        group = self.groups
        self.groups += 1
        servers = self.rng.sample(range(self.servers), min(self.servers, DOUBLE_SPEND_COPIES))
        posts = tuple(
            (
                servers[i % len(servers)],
                Transaction.create(payer, self.accounts[i].public, DOUBLE_SPEND_AMOUNT, now_ms + i),
            )
            for i in range(DOUBLE_SPEND_COPIES)
        )
        return Batch(Kind.DOUBLE, posts, group)

    def _server(self) -> int:
        return self.rng.randrange(self.servers)
