"""Round torrents: a round directory hashed into its .torrent, deterministically (protocol §8.2).

Owns: ``RoundTorrent`` and ``build_round_torrent``. Invariant: the .torrent (and so both
infohashes) is a function of the round directory's name and the bytes of its files alone:
files in ``snapshot.round_files`` order, ``snapshot.PIECE_BYTES`` pieces, hybrid v1+v2, no
mtime, attributes, creation date, creator, trackers or web seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libtorrent as lt

from scryp.core import snapshot
from scryp.errors import LocalError


@dataclass(frozen=True, slots=True)
class RoundTorrent:
    """A round's torrent: the .torrent bytes and the hashes that name it."""

    name: str
    torrent: bytes  # bencoded .torrent, byte-identical wherever the files are identical
    infohash: bytes  # v1, 20 bytes
    infohash_v2: bytes  # BEP 52, 32 bytes

    @property
    def infohash_hex(self) -> str:
        return self.infohash.hex()

    def torrent_info(self) -> Any:
        return lt.torrent_info(self.torrent)


def build_round_torrent(round_dir: Path) -> RoundTorrent:
    """Hash a round directory into its torrent (protocol §8.2). Blocking: run it in a thread.

    Deterministic: the files of ``snapshot.round_files`` in that order (a checkpoint round's,
    with ``balances`` first, when the directory holds ``balances``; each must exist, empty is
    fine), ``snapshot.PIECE_BYTES`` pieces, hybrid v1+v2, no mtime or attributes, and the
    "creation date" libtorrent adds is removed; no creator, trackers or web seeds.
    """
    entries = []
    checkpoint = (round_dir / snapshot.BALANCES).is_file()
    for name in snapshot.round_files(checkpoint):
        path = round_dir / name
        if not path.is_file():
            raise LocalError(f"round directory {round_dir} lacks {name}")
        entries.append(lt.create_file_entry(f"{round_dir.name}/{name}", path.stat().st_size))
    creator = lt.create_torrent(entries, snapshot.PIECE_BYTES)
    # With a Python callback per piece, other threads run between pieces; without one, the
    # binding holds the GIL for the whole hash: a checkpoint's 360 MB at 10M accounts froze
    # the server's event loop (API, peer links, Raft) for 0.8-2.7 s (docs/BENCHMARKS.md).
    lt.set_piece_hashes(creator, str(round_dir.parent), _each_piece)
    generated = creator.generate()
    generated.pop(b"creation date", None)
    torrent = lt.bencode(generated)
    info = lt.torrent_info(torrent)
    hashes = info.info_hashes()
    return RoundTorrent(
        name=round_dir.name,
        torrent=bytes(torrent),
        infohash=hashes.v1.to_bytes(),
        infohash_v2=hashes.v2.to_bytes(),
    )


def _each_piece(piece: int) -> None:
    """``set_piece_hashes``'s progress callback: nothing to do but let other threads in."""
