"""An independent Scryp verifier, written from docs/protocol.md only (§2, §4, §5, §8.2–§8.4,
§8.10): plain hashlib, pynacl and a bencode reader of its own. It must never import ``scryp``
(tests/integration/test_independent_verifier.py checks that).

What it does, step by step as the document says:
- ``dht_get``: read a server's BEP 44 item from a DHT node with one KRPC ``get`` over UDP,
  the target being SHA-1(public key + salt ``scryp1``) (§8.3, §8.10.1);
- ``verify_item``: the item's Ed25519 signature over ``4:salt6:scryp13:seqi<seq>e1:v<v>``
  and the strict pointer record inside (§8.3);
- ``statement`` and ``verify_certificate``: the 120-byte statement and a strict majority of
  pure Ed25519 signatures of it by ``.keys`` members (§8.4, §8.10.2–3);
- ``verify_torrent``: the info dict's SHA-256 is the certified v2 infohash (its SHA-1 the v1
  infohash), and its layout (§8.2, §8.10.5–6);
- ``verify_balances``: the ``balances`` file against the state root, the v1 piece hashes and
  the v2 ``pieces root`` (§4, §8.10.5).
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import nacl.exceptions
import nacl.signing

SALT = b"scryp1"
TAG = b"scryp-round-v1\x00\x00"
PIECE = 16384
SUPPLY = 2**32 - 1


class Rejected(Exception):
    """What was given does not verify."""


# -- bencode (BEP 3), strict ------------------------------------------------------------------


def bdecode(data: bytes) -> Any:
    value, end = _decode(data, 0)
    if end != len(data):
        raise Rejected("bytes after the bencoded value")
    return value


def _decode(data: bytes, at: int) -> tuple[Any, int]:
    if at >= len(data):
        raise Rejected("truncated bencode")
    head = data[at : at + 1]
    if head == b"i":
        end = data.index(b"e", at)
        text = data[at + 1 : end]
        if text in (b"", b"-0") or (text.lstrip(b"-").startswith(b"0") and text != b"0"):
            raise Rejected("non-canonical integer")
        return int(text), end + 1
    if head == b"l":
        items, at = [], at + 1
        while data[at : at + 1] != b"e":
            item, at = _decode(data, at)
            items.append(item)
        return items, at + 1
    if head == b"d":
        result: dict[bytes, Any] = {}
        at += 1
        previous = None
        while data[at : at + 1] != b"e":
            key, at = _decode(data, at)
            if not isinstance(key, bytes) or (previous is not None and key <= previous):
                raise Rejected("dict keys not byte strings in strictly increasing order")
            result[key], at = _decode(data, at)
            previous = key
        return result, at + 1
    if head.isdigit():
        colon = data.index(b":", at)
        length = int(data[at:colon])
        if data[at:colon] != str(length).encode():
            raise Rejected("non-canonical string length")
        end = colon + 1 + length
        if end > len(data):
            raise Rejected("truncated string")
        return data[colon + 1 : end], end
    raise Rejected(f"bad bencode at {at}")


def bencode(value: Any) -> bytes:
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list):
        return b"l" + b"".join(bencode(v) for v in value) + b"e"
    if isinstance(value, dict):
        return b"d" + b"".join(bencode(k) + bencode(value[k]) for k in sorted(value)) + b"e"
    raise TypeError(type(value))


# -- the DHT item (§8.3) -------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    public: bytes
    seq: int
    value: bytes  # the bencoded ``v``: a byte string whose content is the pointer record
    signature: bytes


def target(public: bytes, salt: bytes = SALT) -> bytes:
    """BEP 44 target of a mutable item: SHA-1 of the public key followed by the salt."""
    return hashlib.sha1(public + salt).digest()


def dht_get(node: tuple[str, int], public: bytes, timeout_s: float = 2.0) -> Item | None:
    """One KRPC ``get`` for the server's item, asked of one DHT node; None if it has none."""
    query = {
        b"a": {b"id": os.urandom(20), b"target": target(public)},
        b"q": b"get",
        b"t": b"sv",
        b"y": b"q",
    }
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(timeout_s)
        udp.sendto(bencode(query), node)
        try:
            packet, _ = udp.recvfrom(65536)
        except TimeoutError:
            return None
    reply = bdecode_loose(packet).get(b"r", {})
    if b"v" not in reply or reply.get(b"k") != public:
        return None
    return Item(public, int(reply[b"seq"]), bencode(reply[b"v"]), bytes(reply[b"sig"]))


def bdecode_loose(data: bytes) -> dict[bytes, Any]:
    """A DHT node's reply: bencoded, but nodes need not sort keys the way we require."""
    value, _ = _decode_any(data, 0)
    return value if isinstance(value, dict) else {}


def _decode_any(data: bytes, at: int) -> tuple[Any, int]:
    if data[at : at + 1] == b"d":
        result, at = {}, at + 1
        while data[at : at + 1] != b"e":
            key, at = _decode_any(data, at)
            result[key], at = _decode_any(data, at)
        return result, at + 1
    if data[at : at + 1] == b"l":
        items, at = [], at + 1
        while data[at : at + 1] != b"e":
            item, at = _decode_any(data, at)
            items.append(item)
        return items, at + 1
    return _decode(data, at)


def verify_ed25519(public: bytes, message: bytes, signature: bytes) -> bool:
    """Pure Ed25519 (RFC 8032, not Ed25519ph, no context), as libsodium checks it."""
    try:
        nacl.signing.VerifyKey(public).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class Record:
    api: bytes
    cert: bytes
    ih: bytes
    ih2: bytes
    net: bytes
    recent: list[bytes]
    round: int
    state: bytes


RECORD_KEYS = [b"api", b"cert", b"ih", b"ih2", b"net", b"recent", b"round", b"state", b"v"]


def verify_item(item: Item, quorum: Sequence[bytes]) -> Record:
    if item.public not in quorum:
        raise Rejected("key not in .keys")
    if len(item.value) > 1000 or not 0 <= item.seq < 2**63:
        raise Rejected("item too big or seq out of range")
    signed = b"4:salt%d:%s3:seqi%de1:v%s" % (len(SALT), SALT, item.seq, item.value)
    if not verify_ed25519(item.public, signed, item.signature):
        raise Rejected("BEP 44 item signature does not verify")
    content = bdecode(item.value)
    if not isinstance(content, bytes):
        raise Rejected("v is not a byte string")
    record = bdecode(content)
    if not isinstance(record, dict) or sorted(record) != RECORD_KEYS or record[b"v"] != 1:
        raise Rejected("not a version-1 pointer record")
    fixed = {b"ih": 20, b"ih2": 32, b"net": 32, b"state": 32}
    if any(len(record[k]) != n for k, n in fixed.items()):
        raise Rejected("a hash of the wrong size")
    return Record(
        record[b"api"],
        record[b"cert"],
        record[b"ih"],
        record[b"ih2"],
        record[b"net"],
        list(record[b"recent"]),
        record[b"round"],
        record[b"state"],
    )


# -- statement and certificate (§8.4) ---------------------------------------------------------


def statement(network: bytes, round_number: int, state: bytes, infohash_v2: bytes) -> bytes:
    return TAG + network + round_number.to_bytes(8, "big") + state + infohash_v2


def verify_certificate(cert: bytes, message: bytes, quorum: Sequence[bytes]) -> list[int]:
    """The signers of a certificate that a strict majority of ``quorum`` signed."""
    if not cert or len(cert) != 1 + cert[0] * 65:
        raise Rejected("certificate length")
    entries = [(cert[i], cert[i + 1 : i + 65]) for i in range(1, len(cert), 65)]
    indices = [index for index, _ in entries]
    if indices != sorted(set(indices)) or any(i >= len(quorum) for i in indices):
        raise Rejected("certificate indices not strictly increasing inside the quorum")
    if len(entries) < len(quorum) // 2 + 1:
        raise Rejected("certificate of a minority")
    for index, signature in entries:
        if not verify_ed25519(quorum[index], message, signature):
            raise Rejected(f"signature of server {index} does not verify")
    return indices


def verify_record(record: Record, quorum: Sequence[bytes]) -> list[int]:
    message = statement(record.net, record.round, record.state, record.ih2)
    if len(message) != 120:
        raise Rejected("statement is not 120 bytes")
    return verify_certificate(record.cert, message, quorum)


# -- the torrent and the balances file (§8.2, §4) ---------------------------------------------


def verify_torrent(
    info_dict: bytes, infohash_v2: bytes, infohash_v1: bytes | None
) -> dict[bytes, Any]:
    """The info dict, once it hashes to the certified v2 infohash (and the v1 one, if given)."""
    if hashlib.sha256(info_dict).digest() != infohash_v2:
        raise Rejected("info dict does not hash to the certified v2 infohash")
    if infohash_v1 is not None and hashlib.sha1(info_dict).digest() != infohash_v1:
        raise Rejected("info dict does not hash to the v1 infohash")
    info = bdecode(info_dict)
    if not isinstance(info, dict):
        raise Rejected("the info dict is not a dict")
    if info[b"piece length"] != PIECE or info[b"meta version"] != 2:
        raise Rejected("not a 16 KiB hybrid torrent")
    return info


def merkle_root(data: bytes) -> bytes:
    """BEP 52 ``pieces root`` of a file when a piece is one 16 KiB block."""
    leaves = [hashlib.sha256(data[i : i + PIECE]).digest() for i in range(0, len(data), PIECE)]
    width = 1
    while width < len(leaves):
        width *= 2
    layer = leaves + [bytes(32)] * (width - len(leaves))
    while len(layer) > 1:
        layer = [hashlib.sha256(layer[i] + layer[i + 1]).digest() for i in range(0, len(layer), 2)]
    return layer[0]


def verify_files(info: dict[bytes, Any], files: dict[str, bytes]) -> None:
    """Every file of the round (by name inside the round) against the torrent's hashes."""
    verify_v2_roots(info, files)
    verify_v1_pieces(info, files)


def verify_v2_roots(info: dict[bytes, Any], files: dict[str, bytes]) -> None:
    """Each file against its BEP 52 ``pieces root`` in the ``file tree``."""
    for name, data in files.items():
        entry = info[b"file tree"][name.encode()][b""]
        if len(data) != entry[b"length"]:
            raise Rejected(f"{name} has the wrong length")
        if data and entry.get(b"pieces root") != merkle_root(data):
            raise Rejected(f"{name} does not match its v2 pieces root")


def verify_v1_pieces(info: dict[bytes, Any], files: dict[str, bytes]) -> None:
    """The files in ``files`` order, each padded to a piece by its pad file (``.pad/N``,
    attr ``p``: N zero bytes, which generic clients may write to disk), against the v1
    SHA-1 piece hashes."""
    stream = b""
    for entry in info[b"files"]:
        path = b"/".join(entry[b"path"]).decode()
        stream += bytes(entry[b"length"]) if entry.get(b"attr") == b"p" else files[path]
    hashes = info[b"pieces"]
    if len(stream) % PIECE or len(hashes) != 20 * (len(stream) // PIECE):
        raise Rejected("files and pad files do not fill the pieces")
    for number, at in enumerate(range(0, len(stream), PIECE)):
        digest = hashlib.sha1(stream[at : at + PIECE]).digest()
        if digest != hashes[20 * number : 20 * number + 20]:
            raise Rejected(f"piece {number} does not match its v1 hash")


def state_root(balances: bytes) -> bytes:
    """§4.4.2–3: records grouped by the first 16 bits of their id into 65,536 buckets (in
    file order), leaf = SHA-256(0x00 ‖ bucket), node = SHA-256(0x01 ‖ left ‖ right)."""
    buckets = [b""] * 65536
    for at in range(0, len(balances), 36):
        index = int.from_bytes(balances[at : at + 2], "big")
        buckets[index] += balances[at : at + 36]
    empty = hashlib.sha256(b"\x00").digest()
    level = [hashlib.sha256(b"\x00" + b).digest() if b else empty for b in buckets]
    while len(level) > 1:
        pairs = [level[i] + level[i + 1] for i in range(0, len(level), 2)]
        known: dict[bytes, bytes] = {}  # equal pairs (empty subtrees) hashed once
        level = [
            known.get(p) or known.setdefault(p, hashlib.sha256(b"\x01" + p).digest()) for p in pairs
        ]
    return level[0]


def verify_balances(balances: bytes, state: bytes) -> dict[bytes, int]:
    """The balances file: canonical, and its state root (§4.4.3) is the certified one."""
    if len(balances) % 36:
        raise Rejected("balances length is not a multiple of 36")
    table: dict[bytes, int] = {}
    previous = b""
    for at in range(0, len(balances), 36):
        account, amount = balances[at : at + 32], int.from_bytes(balances[at + 32 : at + 36], "big")
        if account <= previous or amount == 0:
            raise Rejected("balances not sorted, or a zero balance")
        table[account] = amount
        previous = account
    if state_root(balances) != state:  # sorted (checked above): buckets concatenate to it
        raise Rejected("balances do not give the certified state root")
    if sum(table.values()) != SUPPLY:
        raise Rejected("balances do not sum to the supply")
    return table
