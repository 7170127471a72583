"""The verdict of a chaos run (protocol §11.4): pure over the record and the rounds on disk.

What must hold, whatever the faults:
- every copy of a round is the same (balances and transactions), on every server, and each
  round's ``changes`` turn the round before's balances into its own (protocol §4.4.4);
- replaying every round's transactions from the genesis gives every round's balances: no
  overdraft, no payment applied twice, supply exact;
- of each double-spend group, at most one payment is applied;
- outcomes never lie and never change: every outcome a server reported for a payment, during
  the run or at the end, matches the replay (accepted ⇔ in a round), and at the end every
  server knows the outcome of every payment in the rounds (none forgotten);
- after healing, every server is certified at the same round with the same state.
Figures: requests answered, the longest time with no new certified round, payments sent but
never decided.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from scryp.chaos.workload import History, Kind
from scryp.core.balances import TOTAL_SUPPLY, decode_balances, encode_balances
from scryp.core.ledger import WINDOW_MS_DEFAULT
from scryp.core.tx import TX_BYTES, Transaction

VIOLATIONS_LISTED_MAX = 20  # of each kind, in the report


@dataclass(frozen=True, slots=True)
class RoundOnDisk:
    """One server's copy of a round: what the checker needs of its files. Its balances are
    the round's own (a checkpoint round's) or rebuilt from the round before's and its
    ``changes``; None when the server holds neither (the round before is not on its disk)."""

    round: int
    balances_sha256: bytes | None
    supply: int | None
    transactions: bytes
    certified: bool
    changes_agree: bool = True  # False: a checkpoint's own balances are not what they rebuild


@dataclass(frozen=True, slots=True)
class FinalAnswer:
    """What one server said of one payment at the end (``GET /tx``)."""

    http_status: int
    status: str = ""
    reason: str = ""


@dataclass(slots=True)
class Report:
    rounds: int = 0
    payments_sent: int = 0
    payments_applied: int = 0
    double_spend_groups: int = 0
    posts: int = 0
    posts_answered: int = 0
    longest_stall_s: float = 0.0
    longest_stall_from_s: float = 0.0  # when it began, from the start of the load
    undecided: int = 0  # sent and never applied, with no rejection reported
    unknown_after_catch_up: int = 0  # 404s for payments before a server's horizon (allowed)
    violations: dict[str, list[str]] = field(default_factory=dict)

    def violate(self, kind: str, detail: str) -> None:
        listed = self.violations.setdefault(kind, [])
        if len(listed) < VIOLATIONS_LISTED_MAX:
            listed.append(detail)
        else:
            listed[-1] = f"... and more ({detail})"

    @property
    def ok(self) -> bool:
        return not self.violations


@dataclass(frozen=True, slots=True)
class Observed:
    """What the run saw from outside: the history, the answers at the end, and when each new
    certified round was first seen."""

    history: History
    final: Mapping[bytes, Mapping[int, FinalAnswer]]  # tx id -> server -> answer
    final_certified: Mapping[int, tuple[int, str] | None]  # server -> (round, state root)
    certified_seen_s: Sequence[float]
    # server -> the stamp before which it says it does not know outcomes (protocol §6.5)
    horizons_ms: Mapping[int, int] = field(default_factory=dict)
    settled: bool = True  # every server certified at one round after healing, in time
    load_ended_s: float | None = None  # a stall running to the end counts too


def check(genesis: bytes, copies: Mapping[int, Sequence[RoundOnDisk]], seen: Observed) -> Report:
    report = Report()
    rounds = _agreed_rounds(copies, report)
    applied_in = _replay(genesis, rounds, report)
    _check_outcomes(seen, applied_in, report)
    _check_double_spends(seen.history, applied_in, report)
    _check_final_agreement(seen.final_certified, report)
    if not seen.settled:
        report.violate("final state", "the servers did not agree on a new round after healing")
    posts = [post for sent in seen.history.sent.values() for post in sent.posts]
    report.posts = len(posts)
    report.posts_answered = sum(1 for p in posts if 0 < p.http_status < 500)
    points = list(seen.certified_seen_s)
    if seen.load_ended_s is not None and points:
        points.append(max(seen.load_ended_s, points[-1]))
    gaps = [(b - a, a) for a, b in pairwise(points)]
    report.longest_stall_s, report.longest_stall_from_s = max(gaps, default=(0.0, 0.0))
    return report


def _agreed_rounds(
    copies: Mapping[int, Sequence[RoundOnDisk]], report: Report
) -> dict[int, RoundOnDisk]:
    """One copy per round, after checking that every server's copy is the same."""
    rounds: dict[int, RoundOnDisk] = {}
    for server, held in copies.items():
        for copy in held:
            first = rounds.setdefault(copy.round, copy)
            known = None not in (first.balances_sha256, copy.balances_sha256)
            same = first.transactions == copy.transactions and (
                not known or first.balances_sha256 == copy.balances_sha256
            )
            if not same:
                report.violate("round copies differ", f"round {copy.round} on server {server}")
            if first.balances_sha256 is None and copy.balances_sha256 is not None:
                rounds[copy.round] = copy  # the replay compares with balances known
            if copy.supply is not None and copy.supply != TOTAL_SUPPLY:
                report.violate("supply", f"round {copy.round}: {copy.supply} scryp")
            if not copy.changes_agree:
                report.violate("changes differ", f"round {copy.round} on server {server}")
    report.rounds = len(rounds)
    return rounds


def _replay(genesis: bytes, rounds: Mapping[int, RoundOnDisk], report: Report) -> dict[bytes, int]:
    """Replay the rounds' transactions from the genesis; {tx id: round it was applied in}."""
    balances = dict(decode_balances(genesis))
    applied_in: dict[bytes, int] = {}
    expected = 1
    for number in sorted(r for r in rounds if r > 0):
        if number != expected:
            report.violate("rounds missing", f"no server holds rounds {expected}..{number - 1}")
            return applied_in  # the replay cannot go past a gap
        expected = number + 1
        data = rounds[number].transactions
        for at in range(0, len(data), TX_BYTES):
            tx = Transaction.decode(data[at : at + TX_BYTES])
            if tx.tx_id in applied_in:
                report.violate(
                    "applied twice",
                    f"{tx.tx_id.hex()[:16]} in rounds {applied_in[tx.tx_id]} and {number}",
                )
            if balances.get(tx.payer, 0) < tx.amount:
                report.violate("overdraft", f"{tx.tx_id.hex()[:16]} in round {number}")
                return applied_in  # balances past an overdraft mean nothing
            applied_in[tx.tx_id] = number
            balances[tx.payer] = balances.get(tx.payer, 0) - tx.amount
            balances[tx.payee] = balances.get(tx.payee, 0) + tx.amount
        expected_sha256 = rounds[number].balances_sha256
        if expected_sha256 is None:
            continue  # no server holds the round's balances or those before: nothing to compare
        encoded = encode_balances(sorted((a, b) for a, b in balances.items() if b > 0))
        if hashlib.sha256(encoded).digest() != expected_sha256:
            report.violate("replay differs", f"round {number}")
            return applied_in
    report.payments_applied = len(applied_in)
    return applied_in


def _check_outcomes(observed: Observed, applied_in: Mapping[bytes, int], report: Report) -> None:
    history, final = observed.history, observed.final
    report.payments_sent = sum(1 for s in history.sent.values() if s.kind is not Kind.FUND)
    for tx_id, sent in history.sent.items():
        applied = tx_id in applied_in
        name = f"{tx_id.hex()[:16]} ({sent.kind})"
        for seen in sent.seen:
            if (seen.status == "accepted") != applied:
                report.violate(
                    "outcome lied",
                    f"{name}: server {seen.server} said {seen.status} ({seen.reason}) in round "
                    f"{seen.round}; the rounds say {'applied' if applied else 'not applied'}",
                )
        answers = final.get(tx_id, {})
        for server, answer in answers.items():
            if answer.http_status == 200 and (answer.status == "accepted") != applied:
                report.violate("final outcome lied", f"{name}: server {server} {answer.status}")
            if answer.http_status not in (200, 404) and applied:
                report.violate(
                    "outcome unanswered", f"{name}: server {server} answered {answer.http_status}"
                )
            if answer.http_status == 404 and applied:
                # A server that caught up from a round it did not apply says it does not know
                # the decisions before it (protocol §6.5): "unknown", not a lie, not forgotten.
                horizon_ms = observed.horizons_ms.get(server, 0)
                if horizon_ms and sent.tx.timestamp_ms - WINDOW_MS_DEFAULT < horizon_ms:
                    report.unknown_after_catch_up += 1
                else:
                    report.violate("outcome forgotten", f"{name}: server {server} answers 404")
        rejected = (
            any(p.status == "rejected" for p in sent.posts)
            or any(s.status == "rejected" for s in sent.seen)
            or any(a.status == "rejected" for a in answers.values())
        )
        if not applied and not rejected and sent.kind is not Kind.REPLAY:
            report.undecided += 1


def _check_double_spends(history: History, applied_in: Mapping[bytes, int], report: Report) -> None:
    applied = Counter(
        sent.group
        for tx_id, sent in history.sent.items()
        if sent.kind is Kind.DOUBLE and tx_id in applied_in
    )
    groups = {s.group for s in history.sent.values() if s.kind is Kind.DOUBLE}
    report.double_spend_groups = len(groups)
    for group, count in applied.items():
        if count > 1:
            report.violate("double spend", f"group {group}: {count} payments applied")


def _check_final_agreement(
    final_certified: Mapping[int, tuple[int, str] | None], report: Report
) -> None:
    states = set(final_certified.values())
    if None in states or len(states) != 1:
        report.violate("final state", f"servers certified at {dict(final_certified)}")
