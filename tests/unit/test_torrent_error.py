"""A torrent's error as the swarm's fault or ours (scryp/swarm/fetch.py, protocol §8.6.1):
libtorrent's "v1 and v2 hashes do not describe the same data" comes from what peers sent, so
the sync fetches again; a disk error is ours and stops it."""

from __future__ import annotations

import errno

import libtorrent as lt

from scryp.errors import LocalError, RemoteError
from scryp.swarm import FetchFailed
from scryp.swarm.fetch import INCONSISTENT_HASHES, torrent_error

IH = bytes(20)


def test_inconsistent_hashes_are_the_swarms_fault() -> None:
    code = lt.error_code(INCONSISTENT_HASHES, lt.libtorrent_category())
    error = torrent_error(IH, "v1 and v2 hashes do not describe the same data", code)
    assert isinstance(error, FetchFailed) and isinstance(error, RemoteError)


def test_other_errors_are_ours() -> None:
    disk = lt.error_code(errno.ENOSPC, lt.generic_category())
    assert type(torrent_error(IH, "no space left", disk)) is LocalError
    # The same number in another category is not libtorrent's 217.
    other = lt.error_code(INCONSISTENT_HASHES, lt.system_category())
    assert type(torrent_error(IH, "?", other)) is LocalError
