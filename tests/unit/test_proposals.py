"""The proposal queue core (scryp/core/proposals.py, protocol §9.3): the bound, forwarding,
holding while no leader is known, and handing the queue on when office is lost."""

from __future__ import annotations

import hashlib

from scryp.core.proposals import NO_LEADER, OVERLOADED, ForwardTo, ProposalQueue, Propose

TX = bytes(140)


def test_a_leader_queues_up_to_the_bound_then_answers_overloaded() -> None:
    queue = ProposalQueue(queued_max=3)
    assert queue.submit([TX, TX], leading=True, leader=0).refusal is None
    assert queue.submit([TX, TX], leading=True, leader=0).refusal == OVERLOADED
    assert queue.submit([TX], leading=True, leader=0).refusal is None
    assert len(queue) == 3
    assert queue.take(leading=True, leader=0) == [Propose((TX, TX)), Propose((TX,))]
    assert len(queue) == 0


def test_a_follower_forwards_to_the_leader_or_refuses_without_one() -> None:
    queue = ProposalQueue(queued_max=3)
    taken = queue.submit([TX], leading=False, leader=2)
    assert taken.refusal is None and taken.forward == ForwardTo(2, (TX,))
    assert queue.submit([TX], leading=False, leader=None).refusal == NO_LEADER
    assert len(queue) == 0


def test_payments_taken_while_leading_go_to_the_next_leader() -> None:
    queue = ProposalQueue(queued_max=10)
    queue.submit([TX], leading=True, leader=0)
    assert queue.take(leading=False, leader=None) == []  # held while no leader is known
    assert len(queue) == 1
    assert queue.take(leading=False, leader=1) == [ForwardTo(1, (TX,))]
    assert queue.take(leading=False, leader=1) == []


def test_a_forward_is_proposed_by_a_leader_and_dropped_by_anyone_else() -> None:
    assert ProposalQueue.forwarded([TX], leading=True) == Propose((TX,))
    assert ProposalQueue.forwarded([TX], leading=False) is None  # never passed on
    assert ProposalQueue.forwarded([], leading=True) is None


def payment(timestamp_ms: int, tag: int = 0) -> bytes:
    return timestamp_ms.to_bytes(8, "big") + bytes([tag]) * 132


def tx_id(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()


def test_a_payment_not_applied_is_sent_again_until_applied() -> None:
    """A forward lost on a link, or dropped by a server that no longer leads (found by the
    BlockChat experiment: payments never applied, none refused): sent again every resend_ms."""
    queue = ProposalQueue(queued_max=10, resend_ms=1_000, window_ms=5_000)
    tx = payment(10_000)
    assert queue.submit([tx], leading=False, leader=1, now_ms=10_000).forward == ForwardTo(1, (tx,))
    assert queue.take(leading=False, leader=1, now_ms=10_999) == []
    assert queue.take(leading=False, leader=2, now_ms=11_000) == [ForwardTo(2, (tx,))]
    assert queue.take(leading=True, leader=0, now_ms=12_000) == [Propose((tx,))]  # now we lead
    queue.settled([tx_id(tx)])
    assert queue.take(leading=True, leader=0, now_ms=13_000) == []
    assert queue.unsettled == 0 and queue.resent == 2


def test_resending_stops_once_no_copy_could_be_accepted() -> None:
    queue = ProposalQueue(queued_max=10, resend_ms=2_000, window_ms=5_000)
    tx = payment(10_000)
    queue.submit([tx], leading=True, leader=0, now_ms=10_000)
    assert queue.take(leading=True, leader=0, now_ms=10_000) == [Propose((tx,))]
    assert queue.take(leading=True, leader=0, now_ms=12_000) == [Propose((tx,))]
    assert queue.take(leading=True, leader=0, now_ms=14_000) == [Propose((tx,))]
    assert queue.take(leading=True, leader=0, now_ms=16_000) == []  # 10,000 + 5,000 < 16,000
    assert queue.unsettled == 0


def test_payments_due_again_wait_while_no_leader_is_known() -> None:
    queue = ProposalQueue(queued_max=10, resend_ms=1_000, window_ms=5_000)
    tx = payment(10_000)
    queue.submit([tx], leading=False, leader=1, now_ms=10_000)
    assert queue.take(leading=False, leader=None, now_ms=11_500) == []
    assert queue.take(leading=False, leader=2, now_ms=11_600) == [ForwardTo(2, (tx,))]


def test_the_unsettled_set_is_bounded() -> None:
    queue = ProposalQueue(queued_max=10, unsettled_max=3)
    assert queue.submit([payment(1, i) for i in range(3)], False, 1, 0).refusal is None
    assert queue.submit([payment(1, 9)], False, 1, 0).refusal == OVERLOADED
    queue.settled([tx_id(payment(1, 0))])
    assert queue.submit([payment(1, 9)], False, 1, 0).refusal is None
