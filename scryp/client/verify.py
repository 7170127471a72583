"""Which round a client trusts: one pointer carrying a majority certificate (protocol §10.2).

Pure. A record counts only if its item was signed by a key in ``.keys`` (checked by
``scryp.core.pointer.verify_item``) and it carries a certificate that a strict majority of
``.keys`` signed for its own statement (§8.4, ``scryp.core.pointer.certificate_signers``).
Records with no certificate, with a certificate of a minority, or of another network are not
followed, however many of them there are: the client follows certificates, not votes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scryp.core.pointer import PointerRecord, certificate_signers


@dataclass(frozen=True, slots=True)
class VerifiedRound:
    record: PointerRecord
    signers: tuple[int, ...]  # server indices (positions in .keys) in the certificate
    quorum_size: int
    vouching: tuple[int, ...]  # servers whose own pointer names this very round

    @property
    def round(self) -> int:
        return self.record.round


def choose_certified(
    records: Mapping[bytes, PointerRecord],
    quorum: Sequence[bytes],
    network: bytes | None = None,
) -> VerifiedRound | None:
    """The highest majority-certified round among ``records`` (key -> verified record)."""
    best: VerifiedRound | None = None
    for key, record in records.items():
        if key not in quorum or (network is not None and record.network != network):
            continue
        signers = certificate_signers(record, quorum)
        if not signers or (best is not None and record.round <= best.round):
            continue
        vouching = tuple(
            sorted(
                quorum.index(k)
                for k, r in records.items()
                if k in quorum and r.statement == record.statement
            )
        )
        best = VerifiedRound(record, signers, len(quorum), vouching)
    return best
