"""The archive's files (protocol §10.8).

``DIR/rounds/round-…/``: the round's files as the torrent names them: ``transactions`` for
every round, and every file (``balances``, ``changes``, ``window``) of the archive's
**checkpoints**, which are servers' checkpoint rounds, whose torrents hold ``balances``
(round 0, the genesis, then one at least every K rounds, protocol §4.4.4, §4.4.8);
``DIR/index/round-….json``: the round's listing entry (``ListedRound.as_json`` plus
``"checkpoint"``), with its certificate; ``DIR/index/round-….info``: the torrent's bencoded
info dict, to seed the round again after a restart.

Invariants: an entry is written (atomically, §2.5) only after its files were fetched and
checked against its certificate, and the ``.json`` last, so a round is archived exactly when
its ``.json`` exists. Nothing here is trusted by readers: every entry carries the majority
certificate that makes it checkable against ``.keys`` alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scryp.core import snapshot
from scryp.keyfile import atomic_write

ENTRY_BYTES_MAX = 64 * 1024
TRANSACTIONS_ONLY = (snapshot.TRANSACTIONS,)  # what the archive keeps of other rounds


@dataclass(frozen=True, slots=True)
class Archived:
    round: int
    entry: dict[str, Any]  # the GET /rounds entry, "checkpoint" included
    info_dict: bytes

    @property
    def checkpoint(self) -> bool:
        return bool(self.entry.get("checkpoint"))

    @property
    def files(self) -> tuple[str, ...]:
        """The files of the round the archive keeps (and seeds)."""
        return snapshot.round_files(True) if self.checkpoint else TRANSACTIONS_ONLY

    @property
    def infohash(self) -> bytes:
        return bytes.fromhex(str(self.entry["infohash"]))


class ArchiveStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.rounds = root / "rounds"
        self.index = root / "index"

    def round_dir(self, number: int) -> Path:
        return self.rounds / snapshot.round_dir_name(number)

    def add(self, number: int, entry: dict[str, Any], info_dict: bytes) -> Archived:
        """Record a round whose files are in place and checked (its ``.json`` last)."""
        self.index.mkdir(parents=True, exist_ok=True)
        name = snapshot.round_dir_name(number)
        atomic_write(self.index / f"{name}.info", info_dict)
        atomic_write(self.index / f"{name}.json", json.dumps(entry, sort_keys=True).encode())
        return Archived(number, entry, info_dict)

    def load(self) -> dict[int, Archived]:
        """Every round archived so far (a ``.json`` whose files are all there)."""
        found: dict[int, Archived] = {}
        if not self.index.is_dir():
            return found
        for path in sorted(self.index.glob("round-*.json")):
            number = snapshot.parse_round_dir_name(path.stem)
            if number is None:
                continue
            entry = json.loads(path.read_bytes()[:ENTRY_BYTES_MAX])
            info = (self.index / f"{path.stem}.info").read_bytes()
            archived = Archived(number, entry, info)
            if all((self.round_dir(number) / f).is_file() for f in archived.files):
                found[number] = archived
        return found
