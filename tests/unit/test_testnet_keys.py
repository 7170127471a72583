"""The test network's live-view keys (protocol §9.1): a letter, then a server's digit."""

from __future__ import annotations

from scryp.testnet import KeyCommands, agreement


def test_a_letter_then_a_digit_makes_a_command() -> None:
    keys = KeyCommands()
    assert [keys.feed(c) for c in "k1"] == [None, ("kill", 1)]
    assert [keys.feed(c) for c in "p2c2r0"] == [
        None,
        ("pause", 2),
        None,
        ("resume", 2),
        None,
        ("restart", 0),
    ]


def test_a_digit_alone_or_after_another_key_does_nothing_and_q_quits() -> None:
    keys = KeyCommands()
    assert keys.feed("1") is None
    assert [keys.feed(c) for c in "kx1"] == [None, None, None]  # x cancelled the kill
    assert keys.feed("q") == ("quit", -1)


def test_agreement_needs_every_server_certified_at_one_state() -> None:
    up = {"certified_round": 4, "certified_state_root": "aa"}
    assert agreement([up, dict(up)])
    assert not agreement([up, None])  # one server down
    assert not agreement([up, {"certified_round": None, "certified_state_root": None}])
    assert not agreement([up, {"certified_round": 4, "certified_state_root": "bb"}])
