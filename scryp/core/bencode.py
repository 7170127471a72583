"""Canonical bencode (BEP 3), the encoding of DHT values and of pointer records.

Owns: ``encode`` and a strict ``decode``. Invariant: ``encode(decode(b)) == b`` for every ``b``
that ``decode`` accepts, so one value has exactly one encoding and a signature over the bytes
is a signature over the value. ``decode`` therefore rejects everything BEP 3 tolerates but does
not make canonical: leading zeros, ``-0``, unsorted or duplicate dict keys, trailing bytes. It
raises MalformedInput (the sender's fault) and never anything else on bad bytes.

Values: ``int``, ``bytes``, ``list`` of values, ``dict`` with ``bytes`` keys. Text is never a
value: callers encode their own strings, so no encoding question is left to this module.
Reference: docs/protocol.md §8.3.
"""

from __future__ import annotations

from typing import Union

from scryp.errors import MalformedInput

Value = Union[int, bytes, list["Value"], dict[bytes, "Value"]]  # noqa: UP007 (recursive alias)

# Nesting bound for decode: our records are two levels deep; hostile input must not recurse
# the interpreter to death.
MAX_DEPTH = 32


def encode(value: Value) -> bytes:
    """The one canonical encoding of ``value``; TypeError for anything that is not a Value."""
    out: list[bytes] = []
    _encode(value, out)
    return b"".join(out)


def _encode(value: Value, out: list[bytes]) -> None:
    # bool is an int subclass; True is not a bencode value and would silently become 1.
    if isinstance(value, bool):
        raise TypeError("bool is not a bencode value")
    if isinstance(value, int):
        out.append(b"i%de" % value)
    elif isinstance(value, bytes):
        out.append(b"%d:" % len(value))
        out.append(value)
    elif isinstance(value, list):
        out.append(b"l")
        for item in value:
            _encode(item, out)
        out.append(b"e")
    elif isinstance(value, dict):
        out.append(b"d")
        for key in sorted(value):
            if not isinstance(key, bytes):
                raise TypeError(f"dict keys must be bytes, got {type(key).__name__}")
            _encode(key, out)
            _encode(value[key], out)
        out.append(b"e")
    else:
        raise TypeError(f"not a bencode value: {type(value).__name__}")


def decode(data: bytes) -> Value:
    """The value ``data`` canonically encodes; MalformedInput for anything else."""
    if not isinstance(data, bytes):
        raise MalformedInput(f"bencode input must be bytes, got {type(data).__name__}")
    value, end = _decode(data, 0, 0)
    if end != len(data):
        raise MalformedInput(f"{len(data) - end} trailing bytes after the bencoded value")
    return value


def _digits(data: bytes, start: int, stop: int, what: str) -> int:
    """Parse data[start:stop] as a canonical decimal integer (optional '-')."""
    text = data[start:stop]
    negative = text.startswith(b"-")
    body = text[1:] if negative else text
    if not body or not body.isdigit():
        raise MalformedInput(f"bad {what} at offset {start}: {text[:24]!r}")
    if body != b"0" and body.startswith(b"0"):
        raise MalformedInput(f"{what} with a leading zero at offset {start}")
    if negative and body == b"0":
        raise MalformedInput(f"negative zero at offset {start}")
    return -int(body) if negative else int(body)


def _decode(data: bytes, pos: int, depth: int) -> tuple[Value, int]:
    if depth > MAX_DEPTH:
        raise MalformedInput(f"nested deeper than {MAX_DEPTH}")
    if pos >= len(data):
        raise MalformedInput("truncated bencode")
    lead = data[pos : pos + 1]
    if lead == b"i":
        end = data.find(b"e", pos + 1)
        if end < 0:
            raise MalformedInput("unterminated integer")
        return _digits(data, pos + 1, end, "integer"), end + 1
    if lead.isdigit():
        colon = data.find(b":", pos)
        if colon < 0:
            raise MalformedInput("string length without ':'")
        length = _digits(data, pos, colon, "string length")
        if length < 0:
            raise MalformedInput("negative string length")
        start = colon + 1
        if start + length > len(data):
            raise MalformedInput("string runs past the end of the input")
        return data[start : start + length], start + length
    if lead == b"l":
        items: list[Value] = []
        pos += 1
        while data[pos : pos + 1] != b"e":
            item, pos = _decode(data, pos, depth + 1)
            items.append(item)
        return items, pos + 1
    if lead == b"d":
        result: dict[bytes, Value] = {}
        previous: bytes | None = None
        pos += 1
        while data[pos : pos + 1] != b"e":
            if not data[pos : pos + 1].isdigit():
                raise MalformedInput(f"dict key is not a string at offset {pos}")
            key, pos = _decode(data, pos, depth + 1)
            assert isinstance(key, bytes)  # a digit lead always decodes to bytes
            if previous is not None and key <= previous:
                raise MalformedInput(f"dict keys unsorted or duplicated at {key[:24]!r}")
            value, pos = _decode(data, pos, depth + 1)
            result[key] = value
            previous = key
        return result, pos + 1
    raise MalformedInput(f"unexpected byte {lead!r} at offset {pos}")
