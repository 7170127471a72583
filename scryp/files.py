"""Hashing files on disk: what the downloader prints for each file (protocol §8.6). A
round's ``balances`` is checked against its state root instead (``scryp.core.buckets``,
§4.4.3).

Blocking IO: callers run it in a thread for big files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

HASH_CHUNK_BYTES = 1 << 20


def file_sha256(path: Path) -> bytes:
    """SHA-256 of a file, streamed. Blocking: run it in a thread for big files."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.digest()
