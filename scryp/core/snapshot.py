"""The layout of a round's snapshot on disk and in its torrent (protocol §8.1).

Owns: the directory name of a round, the names and fixed order of the files inside it, which
rounds are checkpoints (protocol §4.4.4: they also hold the whole ``balances`` file), and the
fixed torrent parameters (piece size, hybrid v1+v2, no date, creator, trackers or web seeds).
Pure: it names things; ``scryp.swarm`` creates, hashes and seeds them.

Invariant: a round's torrent is a function of (round number, bytes of its files) alone, so every
server that holds byte-identical files computes the same infohash (protocol §8.2).
"""

from __future__ import annotations

import re

# Files of a round, in torrent order. ``balances`` (checkpoint rounds only) comes first so
# that its pieces start at offset 0 and a light client can map a record index to a piece with
# one division.
BALANCES = "balances"
# The records of every account the round changed, new balance (0: removed), sorted by id:
# what turns the previous round's balances into this round's (protocol §4.4.4).
CHANGES = "changes"
TRANSACTIONS = "transactions"
# The ledger's duplicate window at the seal (protocol §6.4), checkpoint rounds only: what a
# server catching up needs besides the balances to decide exactly as the others do.
WINDOW = "window"
# The seal's stamp and the (timestamp, id) records the round added to the window (protocol
# §6.4), rounds that are not checkpoints: a window's worth of ids is rewritten only once a
# checkpoint, and an idle round's torrent still has a file that is not empty (libtorrent
# refuses a torrent of no bytes).
REMEMBERED = "remembered"
DELTA_FILES: tuple[str, ...] = (CHANGES, TRANSACTIONS, REMEMBERED)
CHECKPOINT_FILES: tuple[str, ...] = (BALANCES, CHANGES, TRANSACTIONS, WINDOW)
# Every server of a network must use the same value: it decides which rounds' torrents hold
# the whole balances file, and so every round's infohash (protocol §4.4.4).
CHECKPOINT_EVERY_DEFAULT = 60


def is_checkpoint(round_number: int, checkpoint_every: int) -> bool:
    """Whether round ``round_number`` holds the whole balances file (round 0 always does)."""
    if checkpoint_every < 1:
        raise ValueError("checkpoint_every must be at least 1")
    return round_number % checkpoint_every == 0


def round_files(checkpoint: bool) -> tuple[str, ...]:
    """The files of a round, in torrent order."""
    return CHECKPOINT_FILES if checkpoint else DELTA_FILES


# 16 KiB, the smallest piece BEP 52 allows: a changed account dirties one piece, so a client
# holding the previous round re-downloads ~16 KiB per changed account, and a light client
# fetches one or two pieces to read one account. 1M accounts (36 MB) make 2,197 pieces.
PIECE_BYTES = 16 * 1024

ROUND_DIGITS = 10
ROUND_MAX = 10**ROUND_DIGITS - 1
_ROUND_DIR = re.compile(rf"round-(\d{{{ROUND_DIGITS}}})")


def round_dir_name(round_number: int) -> str:
    """``round-0000000042``: zero-padded so directory listings sort by round."""
    if not 0 <= round_number <= ROUND_MAX:
        raise ValueError(f"round {round_number} outside 0..{ROUND_MAX}")
    return f"round-{round_number:0{ROUND_DIGITS}d}"


def parse_round_dir_name(name: str) -> int | None:
    """The round a directory name stands for, or None if it is not a round directory."""
    match = _ROUND_DIR.fullmatch(name)
    return int(match.group(1)) if match else None


def piece_range(offset: int, length: int, piece_bytes: int = PIECE_BYTES) -> range:
    """Indices of the pieces that hold bytes [offset, offset + length) of the torrent."""
    if offset < 0 or length <= 0:
        raise ValueError("need offset >= 0 and length > 0")
    return range(offset // piece_bytes, (offset + length - 1) // piece_bytes + 1)
