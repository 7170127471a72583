"""Infohashes as people type them (protocol §8.2, §8.6).

Owns: turning the text a user gives (``python -m scryp.client INFOHASH``) into a v1 infohash.
Invariant: the result is always 20 bytes; anything else is the typist's fault
(``MalformedInput``), never a guess.
"""

from __future__ import annotations

from scryp.errors import MalformedInput

INFOHASH_HEX_DIGITS = 40  # a v1 infohash: SHA-1, 20 bytes


def parse_infohash(text: str) -> bytes:
    """A v1 infohash from hex; a concatenation of several 40-hex infohashes means the last."""
    cleaned = "".join(text.split()).lower()
    if not cleaned or len(cleaned) % INFOHASH_HEX_DIGITS:
        raise MalformedInput(f"an infohash is 40 hex digits (or a run of them), got {text!r}")
    try:
        return bytes.fromhex(cleaned[-INFOHASH_HEX_DIGITS:])
    except ValueError:
        raise MalformedInput(f"not hexadecimal: {text!r}") from None
