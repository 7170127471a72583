"""A full sync's last step (protocol §10.4.1): a round's balances file from an older one and
untrusted net changes, accepted only if it gives the certified state root.

Owns: ``apply_to_file``. Invariants: the result is ``old`` itself (nothing changed) or a new
file written atomically to ``out``, and only when its state root is the certified one; a
peer's bad changes or a wrong file give None, never an exception; files are mapped, not read,
and only paths cross into a process pool (``Client.checks``).
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

from scryp.core.buckets import state_root
from scryp.core.changes import apply_changes, merge_changes
from scryp.errors import MalformedInput
from scryp.keyfile import atomic_write


def apply_to_file(old: Path, changes: list[bytes], root: bytes, out: Path) -> Path | None:
    """The balances file ``old`` after the ``changes`` files (oldest first), if that gives the
    certified ``root``: ``old`` itself when the changes change nothing, else the new file
    written to ``out``; None if the root differs or a file is not canonical (a peer's fault
    either way). The check that binds untrusted changes to the certificate (protocol §10.4,
    §10.4.1). Files in and out, mapped, not read: a crowd's full syncs spent a third of their
    CPU copying 36 MB files into fresh memory and out again (docs/BENCHMARKS.md, crowd); and
    nothing but paths crosses into a process pool (``Client.checks``)."""
    try:
        merged = merge_changes(changes)
    except MalformedInput:
        return None
    with old.open("rb") as file:
        if os.fstat(file.fileno()).st_size == 0:
            return None  # no balances file is empty: the faucet is always in it (§4.1)
        with (
            mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped,
            memoryview(mapped) as view,
        ):
            # Nothing raised past here: an exception's traceback would hold views of the
            # mapping, and closing it would then fail with BufferError instead.
            gives_root, new = _applied_view(view, merged, root)
    if not gives_root:
        return None
    if new is None:
        return old
    atomic_write(out, new)
    return out


def _applied_view(view: memoryview, merged: bytes, root: bytes) -> tuple[bool, bytes | None]:
    """``apply_to_file``'s check on the mapped file: (whether the result gives ``root``, the
    new bytes, or None if nothing changes)."""
    try:
        if not merged:
            return state_root(view) == root, None
        new = apply_changes(view, merged)
        return state_root(new) == root, new
    except MalformedInput:  # not whole records, ids not increasing: not the certified state
        return False, None
