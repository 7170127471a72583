"""Ed25519 primitives (pynacl), and the key form libtorrent's BEP 44 API wants.

Pure functions: no files, no clock, no randomness except ``new_seed``, which takes its bytes
from the operating system and is never called by the core. Key files live in
``scryp.keyfile``. Reference: docs/protocol.md §2.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import nacl.bindings
import nacl.exceptions

from scryp.errors import MalformedInput

SEED_BYTES = 32
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
LIBTORRENT_SECRET_BYTES = 64


@dataclass(frozen=True, slots=True)
class KeyPair:
    """An ed25519 key pair made from a 32-byte seed (RFC 8032 §5.1.5)."""

    seed: bytes
    public: bytes
    # libsodium's 64-byte secret key: seed || public. Kept for signing speed.
    _secret: bytes

    @classmethod
    def from_seed(cls, seed: bytes) -> KeyPair:
        if len(seed) != SEED_BYTES:
            raise MalformedInput(f"an ed25519 seed is {SEED_BYTES} bytes, got {len(seed)}")
        public, secret = nacl.bindings.crypto_sign_seed_keypair(seed)
        return cls(seed=seed, public=public, _secret=secret)

    @property
    def account_id(self) -> str:
        """The public key as 64 lowercase hex digits, as users see an account."""
        return self.public.hex()

    def sign(self, message: bytes) -> bytes:
        """The 64-byte detached signature of ``message``."""
        signed = nacl.bindings.crypto_sign(message, self._secret)
        return signed[:SIGNATURE_BYTES]

    def libtorrent_secret(self) -> bytes:
        """The secret key in the form ``session.dht_put_mutable_item`` expects."""
        return libtorrent_secret_from_seed(self.seed)

    def __repr__(self) -> str:  # never print the seed
        return f"KeyPair(public={self.public.hex()})"


def new_seed() -> bytes:
    """A fresh random seed from the operating system's CSPRNG."""
    return os.urandom(SEED_BYTES)


def verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is a valid ed25519 signature of ``message`` under ``public``.

    Never raises for bad input of the right types: a wrong length is simply invalid.
    """
    if len(public) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + message, public)
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
        return False
    return True


def libtorrent_secret_from_seed(seed: bytes) -> bytes:
    """libtorrent's "expanded" ed25519 secret key for a seed (protocol §2.3).

    libtorrent (orlp/ed25519) stores SHA-512(seed) with the scalar half clamped as in
    RFC 8032 §5.1.5: clear the 3 low bits of byte 0, clear the top bit and set the second
    highest bit of byte 31. pynacl's 64-byte secret (seed || public) makes DHT nodes drop the
    item silently, so every BEP 44 put goes through this function.
    """
    if len(seed) != SEED_BYTES:
        raise MalformedInput(f"an ed25519 seed is {SEED_BYTES} bytes, got {len(seed)}")
    expanded = bytearray(hashlib.sha512(seed).digest())
    expanded[0] &= 248
    expanded[31] &= 63
    expanded[31] |= 64
    return bytes(expanded)


def parse_public_key_hex(text: str) -> bytes:
    """A 64-hex-digit account or server id, as bytes; MalformedInput otherwise."""
    stripped = text.strip()
    if len(stripped) != 2 * PUBLIC_KEY_BYTES:
        raise MalformedInput(
            f"a public key is {2 * PUBLIC_KEY_BYTES} hex digits, got {len(stripped)} characters"
        )
    try:
        return bytes.fromhex(stripped)
    except ValueError:
        raise MalformedInput(f"not hexadecimal: {stripped[:16]!r}...") from None
