"""One round as a listing names it (``GET /rounds``, a server's or an archive's), checked
against the quorum (protocol §6.5, §10.8). Pure.

A listing is untrusted JSON. ``certified_round`` turns one entry into a ``ListedRound`` only
if its certificate verifies against ``.keys`` for (network, round, state root, v2 infohash)
(§8.4): the v2 infohash then binds every byte of the round's torrent, so a ``transactions``
file fetched under it is the one the servers certified, whoever listed it. The v1 infohash
and the transaction count are not covered by the certificate: a wrong v1 infohash makes the
fetch fail its v2 check, and a false count of 0 is caught when the replay does not reach the
certified state root.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scryp.core.certificate import Certificate, Statement, verify_certificate
from scryp.errors import MalformedInput

INFOHASH_V1_BYTES = 20


@dataclass(frozen=True, slots=True)
class ListedRound:
    """A round whose statement a majority certificate vouches for; ``infohash`` (v1) and
    ``transactions`` (the count) are the lister's say-so."""

    statement: Statement
    certificate: Certificate
    infohash: bytes
    transactions: int | None  # None: the listing did not say

    @property
    def round(self) -> int:
        return self.statement.round

    @property
    def state_root(self) -> bytes:
        return self.statement.state_root

    @property
    def infohash_v2(self) -> bytes:
        return self.statement.infohash_v2

    def as_json(self) -> dict[str, Any]:
        """The ``GET /rounds`` entry (docs/api.md) for this round."""
        return {
            "round": self.round,
            "state_root": self.state_root.hex(),
            "infohash": self.infohash.hex(),
            "infohash_v2": self.infohash_v2.hex(),
            "transactions": self.transactions,
            "signers": [index for index, _ in self.certificate.signatures],
            "certified": True,
            "certificate": self.certificate.to_bytes().hex(),
        }


def certified_round(
    entry: Mapping[str, Any], network: bytes, quorum: Sequence[bytes]
) -> ListedRound:
    """``entry`` checked: MalformedInput if it is not a listing entry, MalformedInput or
    BadSignature (``verify_certificate``) if its certificate is not a majority of ``quorum``
    for its own statement in ``network``."""
    try:
        number = entry["round"]
        if not isinstance(number, int) or isinstance(number, bool):
            raise ValueError("round is not an integer")
        state = bytes.fromhex(str(entry["state_root"]))
        v2 = bytes.fromhex(str(entry["infohash_v2"]))
        v1 = bytes.fromhex(str(entry["infohash"]))
        certificate = Certificate.from_bytes(bytes.fromhex(str(entry.get("certificate", ""))))
        count = entry.get("transactions")
        if count is not None and (not isinstance(count, int) or count < 0):
            raise ValueError("transactions is not a count")
        statement = Statement(network, number, state, v2)
    except (KeyError, ValueError, TypeError):
        raise MalformedInput(f"a listing entry is malformed: {dict(entry)!r:.200}") from None
    if len(v1) != INFOHASH_V1_BYTES:
        raise MalformedInput(f"round {number}: a v1 infohash is {INFOHASH_V1_BYTES} bytes")
    verify_certificate(certificate, statement, quorum)
    return ListedRound(statement, certificate, v1, count)
