"""The client's use cases, shared by its two front ends: the command line (``commands``) and
the wallet page (``wallet``) (protocol §10.6, §10.7).

- **verified balance**: a sync chosen by mode (protocol §10.4: ``auto`` picks the cheapest);
- **history**: the account's payments in the synced rounds and, with an archive, in every
  round since the genesis, verified (protocol §10.5, §10.8), and its balance in the held round;
- **status**: the certified round, every server's pointer and every API's own report;
- **pay**: the checks before sending (payee, amount, not oneself, the verified balance), then
  sign, submit, resend while no server knows it, and wait until a certified round decides it.

Each returns a frozen result object with an ``as_json`` form (the one both front ends
print or serve), raises the error tree's exceptions, and prints nothing. Nothing here
imports libtorrent: the client session is only a parameter, so the pure parts are unit tested
without one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from scryp.client import archive, servers
from scryp.client.store import Payment, Store, read_balance
from scryp.client.verify import VerifiedRound
from scryp.core.pointer import PointerRecord, certified
from scryp.core.tx import AMOUNT_MAX, Transaction
from scryp.crypto import KeyPair, parse_public_key_hex
from scryp.errors import MalformedInput, NotAvailable, RemoteError, invariant

if TYPE_CHECKING:
    from scryp.client.sync import Client, Synced

AUTO = "auto"


class BadArguments(MalformedInput):
    """The user's own input is wrong (payee format, amount): nothing was sent."""


class InsufficientFunds(MalformedInput):
    """The verified balance cannot cover the payment: nothing was sent."""


# -- checks before anything is sent (protocol §10.6) --------------------------------------------


def parse_amount(text: str) -> int:
    try:
        amount = int(text)
    except ValueError:
        raise BadArguments(f"amount {text!r} is not a whole number of scryp") from None
    if not 1 <= amount <= AMOUNT_MAX:
        raise BadArguments(f"amount must be 1..{AMOUNT_MAX} scryp, got {amount}")
    return amount


def parse_account(text: str) -> bytes:
    try:
        return parse_public_key_hex(text.lower())
    except MalformedInput as error:
        raise BadArguments(f"account {text!r}: {error}") from None


def check_payee(payer: bytes, payee: bytes) -> None:
    if payee == payer:
        raise BadArguments("payer and payee are the same account")


# -- results ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifiedBalance:
    """An account's balance in a round a majority certificate vouches for, and the sync that
    read it."""

    account: bytes | None
    balance: int | None  # None: no account asked, or a sync that reads none (history, light)
    verified: VerifiedRound
    sync: str  # the mode used: light, incremental, full or cached
    fell_back: str  # why a cheaper sync was abandoned, or ""
    bytes_downloaded: int
    seconds: float

    @classmethod
    def from_synced(cls, synced: Synced, account: bytes | None) -> VerifiedBalance:
        return cls(
            account,
            synced.balance,
            synced.round,
            synced.mode,
            synced.fell_back,
            synced.bytes_downloaded,
            synced.seconds,
        )

    @property
    def verified_by(self) -> str:
        return f"{len(self.verified.signers)} of {self.verified.quorum_size} servers"

    def as_json(self) -> dict[str, Any]:
        record = self.verified.record
        return {
            "account": self.account.hex() if self.account else None,
            "balance": self.balance,
            "round": self.verified.round,
            "state_root": record.state_root.hex(),
            "infohash": record.infohash.hex(),
            "network": record.network.hex(),
            "sync": self.sync,
            "fell_back": self.fell_back or None,
            "bytes_downloaded": self.bytes_downloaded,
            "seconds": round(self.seconds, 3),
            "signers": list(self.verified.signers),
            "servers": self.verified.quorum_size,
            "verified_by": self.verified_by,
        }


@dataclass(frozen=True, slots=True)
class PaymentEntry:
    """One payment as the account sees it: in or out, and the other side."""

    round: int
    tx_id: bytes
    timestamp_ms: int
    outgoing: bool
    amount: int
    counterparty: bytes

    @classmethod
    def of(cls, account: bytes, payment: Payment) -> PaymentEntry:
        tx = payment.tx
        outgoing = tx.payer == account
        counterparty = tx.payee if outgoing else tx.payer
        return cls(payment.round, tx.tx_id, tx.timestamp_ms, outgoing, tx.amount, counterparty)

    def as_json(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "id": self.tx_id.hex(),
            "timestamp_ms": self.timestamp_ms,
            "direction": "out" if self.outgoing else "in",
            "amount": self.amount,
            "counterparty": self.counterparty.hex(),
        }


@dataclass(frozen=True, slots=True)
class History:
    """The account's payments in the synced rounds, oldest first, and its balance in the held
    round (``at.balance``; None if no whole round is held, after a light sync)."""

    at: VerifiedBalance
    payments: tuple[PaymentEntry, ...]
    from_round: int | None = None  # the first round covered (0: from the genesis)
    archive_error: str | None = None  # why rounds before ``from_round`` are not covered

    def as_json(self, newest_first: bool = False, limit: int | None = None) -> dict[str, Any]:
        shown = self.payments[::-1] if newest_first else self.payments
        return {
            **self.at.as_json(),
            "payments": [p.as_json() for p in shown[:limit]],
            "from_round": self.from_round,
            "archive_error": self.archive_error,
        }


def assemble_history(
    store: Store, account: bytes, at: VerifiedBalance, archive_error: str | None = None
) -> History:
    """``account``'s history from what ``store`` holds; its balance from the held round."""
    payments = tuple(PaymentEntry.of(account, p) for p in store.payments(account))
    held = store.held()
    balance = read_balance(held, account) if held else None
    at = _replace_balance(at, account, balance)
    return History(at, payments, archive.first_round(store), archive_error)


def _replace_balance(at: VerifiedBalance, account: bytes, balance: int | None) -> VerifiedBalance:
    return VerifiedBalance(
        account, balance, at.verified, at.sync, at.fell_back, at.bytes_downloaded, at.seconds
    )


@dataclass(frozen=True, slots=True)
class ServerState:
    """What one server's API says of itself (untrusted: shown as what it is)."""

    api: str
    up: bool
    role: Any = None
    round: Any = None
    certified_round: Any = None

    @classmethod
    def of(cls, api: str, status: Mapping[str, Any] | None) -> ServerState:
        if status is None:
            return cls(api, False)
        certified = status.get("certified_round")
        return cls(api, True, status.get("role"), status.get("round"), certified)

    def as_json(self) -> dict[str, Any]:
        return {
            "api": self.api,
            "up": self.up,
            "role": self.role,
            "round": self.round,
            "certified_round": self.certified_round,
        }


@dataclass(frozen=True, slots=True)
class PointerState:
    """One quorum server's pointer as this client read it."""

    index: int
    public_key: bytes
    record: PointerRecord | None
    refused: str | None  # why its item was refused, if it was
    agrees: bool  # it names the very statement the chosen certificate vouches for
    certified: bool = False  # it carries a certificate that verifies against .keys (§8.4)

    def as_json(self) -> dict[str, Any]:
        record = self.record
        return {
            "index": self.index,
            "public_key": self.public_key.hex(),
            "round": record.round if record else None,
            "state_root": record.state_root.hex() if record else None,
            # v1, 40 hex: what the downloader takes (python -m scryp.client INFOHASH, §8.6).
            "infohash": record.infohash.hex() if record else None,
            # Checked, not just present: a forged certificate vouches for nothing (§8.4).
            "certified": self.certified,
            "api": record.api if record else None,
            "refused": self.refused,
            "agrees": self.agrees,
        }


def pointer_states(
    quorum: Sequence[bytes],
    records: Mapping[bytes, PointerRecord],
    refused: Mapping[bytes, RemoteError],
    verified: VerifiedRound | None,
) -> tuple[PointerState, ...]:
    """Every quorum server's pointer, in ``.keys`` order, against the chosen round."""
    states = []
    for index, key in enumerate(quorum):
        record = records.get(key)
        agrees = bool(verified and record and record.statement == verified.record.statement)
        reason = str(refused[key]) if key in refused else None
        signed = record is not None and certified(record, quorum)
        states.append(PointerState(index, key, record, reason, agrees, signed))
    return tuple(states)


@dataclass(frozen=True, slots=True)
class Status:
    quorum_size: int
    verified: VerifiedRound | None  # None: no majority-certified round found
    pointers: tuple[PointerState, ...]
    apis: tuple[ServerState, ...]
    bootstrap: tuple[tuple[str, int], ...] = ()  # the DHT nodes this client joined

    def as_json(self) -> dict[str, Any]:
        verified = self.verified
        return {
            "servers": self.quorum_size,
            "certified_round": verified.round if verified else None,
            "state_root": verified.record.state_root.hex() if verified else None,
            "infohash": verified.record.infohash.hex() if verified else None,
            "bootstrap": [f"{host}:{port}" for host, port in self.bootstrap],
            "signers": list(verified.signers) if verified else [],
            "agreeing": list(verified.vouching) if verified else [],
            "pointers": [p.as_json() for p in self.pointers],
            "apis": [a.as_json() for a in self.apis],
        }


@dataclass(frozen=True, slots=True)
class PayResult:
    """How a certified round decided a payment."""

    tx_id: bytes
    payer: bytes
    payee: bytes
    amount: int
    accepted: bool
    reason: str | None  # why it was rejected
    round: int
    submitted_to: str  # the API that first took it

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.tx_id.hex(),
            "payer": self.payer.hex(),
            "payee": self.payee.hex(),
            "amount": self.amount,
            "status": "accepted" if self.accepted else "rejected",
            "reason": self.reason,
            "round": self.round,
            "submitted_to": self.submitted_to,
        }


# -- use cases ----------------------------------------------------------------------------------


async def verified_balance(
    client: Client, account: bytes, mode: str = AUTO, min_round: int = 0
) -> VerifiedBalance:
    """``account``'s balance in the newest certified round (at least ``min_round``)."""
    return VerifiedBalance.from_synced(await client.sync_latest(mode, account, min_round), account)


async def history(client: Client, account: bytes, mode: str = AUTO, min_round: int = 0) -> History:
    """Sync, then ``account``'s history. ``auto`` syncs the whole state (full once, then
    incremental) rather than one account's balance: history needs rounds held (§10.5)."""
    synced = await client.sync_latest(mode, None if mode == AUTO else account, min_round)
    at = VerifiedBalance.from_synced(synced, account)
    store = client.store(synced.round)
    error = None
    if client.network.archives:  # the rounds before the first sync, verified (§10.8)
        try:
            await archive.fill_from_genesis(client, store, synced.round.record.network)
        except (RemoteError, NotAvailable) as problem:
            error = str(problem)
    return assemble_history(store, account, at, error)


async def server_states(apis: Sequence[str]) -> tuple[ServerState, ...]:
    statuses = await servers.statuses(apis)
    return tuple(ServerState.of(api, s) for api, s in zip(apis, statuses, strict=True))


async def status(client: Client) -> Status:
    quorum = client.network.quorum
    try:
        verified: VerifiedRound | None = await client.latest()
    except RemoteError:
        verified = None
    records, _ = await client.swarm.get_pointers(quorum)
    pointers = pointer_states(quorum, records, client.refused, verified)
    apis = await server_states(client.apis)
    return Status(len(quorum), verified, pointers, apis, client.network.bootstrap)


async def spendable(client: Client, account: bytes, amount: int) -> VerifiedBalance:
    """``account``'s verified balance for a payment of ``amount``. DHT pointers can lag the
    servers by a few rounds: if the balance is short, wait for the round the servers say is
    certified before answering (a hint only: the balance read is still verified)."""
    funds = await verified_balance(client, account)
    if (funds.balance or 0) < amount:
        reported = [s.certified_round for s in await server_states(client.apis)]
        newest = max((r for r in reported if isinstance(r, int)), default=0)
        if newest > funds.verified.round:
            funds = await verified_balance(client, account, AUTO, newest)
    return funds


def check_funds(funds: VerifiedBalance, amount: int) -> None:
    """Refuse, before sending, a payment the verified balance cannot cover."""
    balance = funds.balance or 0
    if balance < amount:
        verified = funds.verified
        raise InsufficientFunds(
            f"insufficient funds: {balance} scryp at round {verified.round} "
            f"(verified by {len(verified.signers)} of {verified.quorum_size}), "
            f"paying {amount}; nothing was sent"
        )


async def pay(
    client: Client,
    payer: KeyPair,
    payee: bytes,
    amount: int,
    timeout_s: float,
    *,
    funds: VerifiedBalance | None = None,
) -> PayResult:
    """Check, then send and wait until a certified round decides the payment. ``funds``: the
    payer's verified balance if the caller has a fresh one (else it is synced here)."""
    check_payee(payer.public, payee)
    if funds is None:
        funds = await spendable(client, payer.public, amount)
    invariant(funds.account == payer.public, "funds checked for another account than the payer")
    check_funds(funds, amount)
    return await send_payment(client.apis, payer, payee, amount, timeout_s)


async def send_payment(
    apis: Sequence[str], payer: KeyPair, payee: bytes, amount: int, timeout_s: float
) -> PayResult:
    """Sign (timestamp now), submit, and wait for the certified outcome; resent while no server
    knows it (``servers.wait_certified``, protocol §10.6)."""
    tx = Transaction.create(payer, payee, amount, int(time.time() * 1000))
    server = await servers.submit(apis, tx)
    outcome = await servers.wait_certified(apis, tx, timeout_s)
    accepted, reason = outcome.accepted, outcome.reason
    return PayResult(tx.tx_id, payer.public, payee, amount, accepted, reason, outcome.round, server)
