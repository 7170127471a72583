"""The error hierarchy: whose fault is it?

    ScrypError
    ├── RemoteError            the peer's or client's fault: reject with a reason, log, go on
    │   ├── MalformedInput     bytes that do not decode (wrong length, bad hex, bad field)
    │   ├── BadSignature       a signature that does not verify
    │   └── HandshakeFailed    a peer link that failed authentication (protocol §9.2)
    ├── NotAvailable           not available now: retry later or report; nobody's bug
    │   └── TimedOut           a deadline passed (swarm, DHT, a peer's answer)
    └── LocalError             our bug or our environment: fail loudly
        ├── InvariantViolated  a checked invariant of the core does not hold
        ├── ConfigError        a missing or malformed local file (key, .keys, genesis)
        └── StorageCorrupt     a server's own data on disk is damaged (a round, the log)

A server never crashes on a RemoteError or a NotAvailable; it never catches an
InvariantViolated.
"""

from __future__ import annotations


class ScrypError(Exception):
    """Base of every error Scryp raises on purpose."""


class RemoteError(ScrypError):
    """Input from a peer or client was wrong; the message says what, for the sender."""


class MalformedInput(RemoteError):
    """Bytes or text that do not decode to the expected structure."""


class BadSignature(RemoteError):
    """A signature that does not verify under the claimed key."""


class HandshakeFailed(RemoteError):
    """A peer link's handshake or a sealed frame failed authentication (protocol §9.2)."""


class NotAvailable(ScrypError):
    """Something we need is not available now (unreachable, closed, too slow): retry or
    report it; neither the peer's fault nor our bug."""


class TimedOut(NotAvailable):
    """A deadline passed before the awaited event (a torrent, a DHT item, a peer's answer)."""


class LocalError(ScrypError):
    """Our own bug or broken local environment."""


class InvariantViolated(LocalError):
    """A core invariant does not hold: a bug, never the peer's fault."""


class ConfigError(LocalError):
    """A local file the operator provides is missing or malformed."""


class StorageCorrupt(LocalError):
    """A server's own data on disk does not hold what it wrote (a damaged round file, a
    round the write-ahead log names but that is gone): stop, never serve it (§9.10)."""


def invariant(condition: bool, message: str) -> None:
    """Check an invariant even under ``python -O`` (which strips ``assert``)."""
    if not condition:
        raise InvariantViolated(message)
