"""The proposal queue core (scryp/core/proposals.py, protocol §9.3): the bound, forwarding,
holding while no leader is known, and handing the queue on when office is lost."""

from __future__ import annotations

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
