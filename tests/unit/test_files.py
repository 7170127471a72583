"""Streamed file hashing (scryp/files.py): what a fetched balances file is checked with."""

from __future__ import annotations

import hashlib
from pathlib import Path

from scryp.files import HASH_CHUNK_BYTES, file_sha256


def test_file_sha256_matches_hashlib_across_chunk_boundaries(tmp_path: Path) -> None:
    for size in (0, 1, HASH_CHUNK_BYTES - 1, HASH_CHUNK_BYTES, 2 * HASH_CHUNK_BYTES + 7):
        path = tmp_path / f"f{size}"
        data = bytes(i % 251 for i in range(size))
        path.write_bytes(data)
        assert file_sha256(path) == hashlib.sha256(data).digest(), size
