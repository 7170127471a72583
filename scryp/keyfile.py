"""Key files on disk: secret seeds (hex, mode 0600) and the ``.keys`` quorum (protocol §2).

A seed file holds the 32-byte ed25519 seed as 64 hex digits and a newline, readable by its
owner only. ``.keys`` lists the quorum: one 64-hex server public key per line, in server
order; blank lines and lines starting with ``#`` are ignored. Writes are atomic (temp file,
fsync, rename, fsync of the directory), so a crash never leaves half a key behind.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from scryp.crypto import SEED_BYTES, KeyPair, new_seed, parse_public_key_hex
from scryp.errors import ConfigError, MalformedInput

SEED_FILE_MODE = 0o600
QUORUM_SIZES = (1, 3, 5, 7)
KEY_FILE_BYTES_MAX = 4096


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new, never a mix."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # the umask must not widen or narrow what we asked for
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    fsync_directory(path.parent)


def link_durably(source: Path, target: Path) -> None:
    """Give a file written by someone else a second name ``target`` (replacing any file
    there), durably: data flushed first, then the new name; the old name stays."""
    descriptor = os.open(source, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    temporary = target.with_name(f".{target.name}.link-{os.getpid()}")
    temporary.unlink(missing_ok=True)
    os.link(source, temporary)
    os.replace(temporary, target)
    fsync_directory(target.parent)


def fsync_directory(path: Path) -> None:
    """Make a rename or a new entry in the directory ``path`` durable."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_seed(path: Path, seed: bytes) -> None:
    if len(seed) != SEED_BYTES:
        raise ValueError(f"a seed is {SEED_BYTES} bytes")
    atomic_write(Path(path), seed.hex().encode() + b"\n", SEED_FILE_MODE)


def read_seed(path: Path) -> bytes:
    """The seed in ``path``; ConfigError if missing, malformed or readable by others."""
    path = Path(path)
    try:
        info = path.stat()
        if info.st_size > KEY_FILE_BYTES_MAX:
            raise ConfigError(f"{path}: too large for a seed file")
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read seed file {path}: {error}") from None
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise ConfigError(
            f"{path}: a secret seed must be readable by its owner only (chmod 600 {path})"
        )
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        raise ConfigError(f"{path}: a seed file holds 64 hex digits") from None
    if len(seed) != SEED_BYTES:
        raise ConfigError(f"{path}: a seed is 64 hex digits, found {len(text)} characters")
    return seed


def load_or_create_key(path: Path) -> KeyPair:
    """The key pair in ``path``, creating a new random one if the file does not exist."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_seed(path, new_seed())
    return KeyPair.from_seed(read_seed(path))


def parse_quorum(text: str) -> list[bytes]:
    """The server public keys in a ``.keys`` text, in order; MalformedInput if malformed."""
    keys: list[bytes] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            key = parse_public_key_hex(stripped)
        except MalformedInput as error:
            raise MalformedInput(f"line {number}: {error}") from None
        if key in keys:
            raise MalformedInput(f"line {number}: server key listed twice")
        keys.append(key)
    if len(keys) not in QUORUM_SIZES:
        raise MalformedInput(
            f"a quorum has {', '.join(map(str, QUORUM_SIZES))} servers, found {len(keys)}"
        )
    return keys


def read_quorum(path: Path) -> list[bytes]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")  # comments may be any text; keys are hex
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read quorum file {path}: {error}") from None
    try:
        return parse_quorum(text)
    except MalformedInput as error:
        raise ConfigError(f"{path}: {error}") from None


def format_quorum(keys: list[bytes]) -> str:
    return "".join(f"{key.hex()}\n" for key in keys)


def write_quorum(path: Path, keys: list[bytes]) -> None:
    parse_quorum(format_quorum(keys))  # refuse to write a file we would not read back
    atomic_write(Path(path), format_quorum(keys).encode())
