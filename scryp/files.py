"""Hashing files on disk: what a client checks a fetched round's ``balances`` against (its
state root, protocol §4.2, §8.6) and what the downloader prints for each file.

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
