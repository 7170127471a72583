"""Which round a client trusts: one pointer carrying a majority certificate (protocol §10.2).

Pure. A record counts only if its item was signed by a key in ``.keys`` (checked by
``scryp.core.pointer.verify_item``) and it carries a certificate that a strict majority of
``.keys`` signed for its own statement (§8.4, ``scryp.core.pointer.certificate_signers``).
Records with no certificate, with a certificate of a minority, or of another network are not
followed, however many of them there are: the client follows certificates, not votes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from scryp.core.pointer import PointerRecord, certificate_signers


@dataclass(frozen=True, slots=True)
class VerifiedRound:
    record: PointerRecord
    signers: tuple[int, ...]  # server indices (positions in .keys) in the certificate
    quorum_size: int
    vouching: tuple[int, ...]  # servers whose own pointer names this very round
    # Other servers' records of the same certified statement whose uncertified parts (the
    # v1 infohash, the recent rounds) differ: tried in turn if fetching by ``record`` fails,
    # so one lying server can delay a sync but not stop it (protocol §10.2).
    alternatives: tuple[PointerRecord, ...] = ()

    @property
    def round(self) -> int:
        return self.record.round

    def candidates(self) -> tuple[VerifiedRound, ...]:
        """This round as each distinct record names it: the chosen one first."""
        return (self, *(replace(self, record=r, alternatives=()) for r in self.alternatives))


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
        same = [
            (quorum.index(k), r)
            for k, r in records.items()
            if k in quorum and r.statement == record.statement
        ]
        vouching = tuple(sorted(index for index, _ in same))
        chosen, *others = _by_support([r for _, r in sorted(same, key=lambda x: x[0])])
        best = VerifiedRound(chosen, signers, len(quorum), vouching, tuple(others))
    return best


def _by_support(records: Sequence[PointerRecord]) -> list[PointerRecord]:
    """Distinct records of one statement, the one most servers publish first (a lone server
    that names another torrent is outvoted), then in ``.keys`` order."""
    support: dict[tuple[bytes, tuple[bytes, ...]], list[PointerRecord]] = {}
    for record in records:
        support.setdefault((record.infohash, record.recent), []).append(record)
    ranked = sorted(support.values(), key=lambda group: -len(group))  # stable: .keys order
    return [group[0] for group in ranked]
