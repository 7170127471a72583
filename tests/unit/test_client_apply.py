"""A full sync's last step (protocol §10.4.1): a checkpoint's balances file plus untrusted net
changes give the round's balances only if they give its certified state root; the file is
mapped, not read, and an unchanged file is handed back rather than copied."""

from __future__ import annotations

import hashlib
from pathlib import Path

from scryp.client.apply import apply_to_file
from scryp.core.balances import RECORD
from scryp.core.buckets import state_root
from scryp.core.changes import apply_changes, encode_changes
from scryp.keyfile import link_durably

IDS = sorted(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(3000))
OLD = b"".join(RECORD.pack(account, 10 + n) for n, account in enumerate(IDS))
NEW_ACCOUNT = b"\x80" * 32
CHANGES = encode_changes([(IDS[5], 999), (IDS[7], 0), (NEW_ACCOUNT, 42)])
NEW = apply_changes(OLD, CHANGES)


def old_file(tmp_path: Path) -> Path:
    path = tmp_path / "balances"
    path.write_bytes(OLD)
    return path


def test_no_changes_hand_back_the_checked_file_itself(tmp_path: Path) -> None:
    old, out = old_file(tmp_path), tmp_path / "out"
    assert apply_to_file(old, [b"", b""], state_root(OLD), out) == old
    assert not out.exists()


def test_no_changes_and_another_root_is_refused(tmp_path: Path) -> None:
    """The checkpoint's torrent is named by an untrusted listing: with nothing to apply, the
    file itself must still give the certified root."""
    old, out = old_file(tmp_path), tmp_path / "out"
    assert apply_to_file(old, [b""], state_root(NEW), out) is None


def test_changes_that_give_the_root_are_written_out(tmp_path: Path) -> None:
    old, out = old_file(tmp_path), tmp_path / "out"
    assert apply_to_file(old, [CHANGES], state_root(NEW), out) == out
    assert out.read_bytes() == NEW
    assert old.read_bytes() == OLD


def test_forged_or_garbled_changes_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    old, out = old_file(tmp_path), tmp_path / "out"
    forged = encode_changes([(IDS[5], 1_000_000)])
    assert apply_to_file(old, [forged], state_root(NEW), out) is None
    assert apply_to_file(old, [CHANGES[:-1]], state_root(NEW), out) is None  # not records
    assert apply_to_file(old, [CHANGES[36:] + CHANGES[:36]], state_root(NEW), out) is None
    assert not out.exists()


def test_an_empty_file_is_no_balances_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert apply_to_file(empty, [b""], state_root(OLD), tmp_path / "out") is None


def test_a_file_linked_into_place_keeps_its_old_name(tmp_path: Path) -> None:
    """An unchanged held round's file is linked, not moved, into the new round's place: the
    state file still names the held round until ``hold`` (protocol §10.4.1)."""
    old = old_file(tmp_path)
    target = tmp_path / "round" / "balances"
    target.parent.mkdir()
    target.write_bytes(b"stale")
    link_durably(old, target)
    assert old.read_bytes() == target.read_bytes() == OLD
    assert sorted(p.name for p in target.parent.iterdir()) == ["balances"]
