"""The DHT node cache (the original's ``.boot`` file; protocol §8.8): libtorrent's saved DHT
state (its node id and the nodes of its routing table), written to a file in the owner's data
directory and loaded at the next start, so a restart rejoins the DHT even when no bootstrap node
is reachable.

The file is what ``lt.write_session_params_buf`` writes with ``save_dht_state`` only: a
bencoded ``{"dht state": {"node-id": [...], "nodes": [...], "nodes6": [...]}}`` whose nodes
are compact endpoints (4 or 16 address bytes, then a 2-byte big-endian port). Invariants: a
node is saved and loaded only if the session's network mode allows its address (never a public
address in loopback mode, whatever the file says); the file is written atomically; a file
that does not decode is ignored with a warning (it is only a cache).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import libtorrent as lt

from scryp.keyfile import atomic_write

log = logging.getLogger(__name__)

STATE_FILE_BYTES_MAX = 1 << 20
NODES_KEPT_MAX = 1000  # a routing table holds a few hundred
_FLAGS = lt.save_state_flags_t.save_dht_state
_COMPACT_BYTES = {b"nodes": 6, b"nodes6": 18}


def _kept(nodes: object, size: int, allows: Callable[[str], bool]) -> list[bytes]:
    """The compact endpoints in ``nodes`` whose address ``allows`` accepts and whose port is
    not 0; anything malformed is dropped."""
    if not isinstance(nodes, list):
        return []
    kept: list[bytes] = []
    for node in nodes[:NODES_KEPT_MAX]:
        if not isinstance(node, bytes) or len(node) != size:
            continue
        host = str(ipaddress.ip_address(node[:-2]))
        if int.from_bytes(node[-2:], "big") and allows(host):
            kept.append(node)
    return kept


def filtered(state: bytes, allows: Callable[[str], bool]) -> bytes | None:
    """The saved state with only the nodes ``allows`` accepts, or None if it does not decode."""
    try:
        decoded: Any = lt.bdecode(state)
        dht = decoded[b"dht state"]
        ids = dht.get(b"node-id", [])
    except (KeyError, TypeError, AttributeError, RuntimeError):
        return None
    if not isinstance(ids, list):
        return None
    out: Any = {b"node-id": [i for i in ids if isinstance(i, bytes)]}
    for key, size in _COMPACT_BYTES.items():
        out[key] = _kept(dht.get(key), size, allows)
    return bytes(lt.bencode({b"dht state": out}))


def node_count(state: bytes) -> int:
    """How many nodes a (filtered) saved state lists."""
    decoded: Any = lt.bdecode(state)
    dht = decoded[b"dht state"]
    return sum(len(dht.get(key) or []) for key in _COMPACT_BYTES)


def session_params(
    settings: dict[str, Any], path: Path | None, allows: Callable[[str], bool]
) -> Any:
    """libtorrent's session params: ``settings``, and the DHT state cached in ``path`` (its
    nodes that ``allows`` accepts) when there is one."""
    params: Any = lt.session_params()
    if path is not None:
        state = _read(path, allows)
        if state is not None:
            params = lt.read_session_params(state, _FLAGS)
            log.info("DHT node cache %s: %d node(s)", path, node_count(state))
    params.settings = settings
    return params


def _read(path: Path, allows: Callable[[str], bool]) -> bytes | None:
    try:
        with path.open("rb") as handle:
            raw = handle.read(STATE_FILE_BYTES_MAX + 1)
    except FileNotFoundError:
        return None
    except OSError as error:
        log.warning("cannot read the DHT node cache %s: %s", path, error)
        return None
    state = filtered(raw, allows) if len(raw) <= STATE_FILE_BYTES_MAX else None
    if state is None:
        log.warning("ignoring the DHT node cache %s: not a saved DHT state", path)
    return state


def save(session: Any, path: Path, allows: Callable[[str], bool]) -> int:
    """Write the session's DHT state (the allowed nodes) to ``path`` atomically; returns how
    many nodes it holds. Blocking (a file write and an fsync): call it in a thread. An empty
    routing table does not replace a file that lists nodes."""
    raw = bytes(lt.write_session_params_buf(session.session_state(_FLAGS), _FLAGS))
    state = filtered(raw, allows)
    if state is None:
        return 0
    count = node_count(state)
    if count == 0 and path.exists():
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, state, 0o600)
    return count
