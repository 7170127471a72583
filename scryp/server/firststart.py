"""A server's start-up files, and what a fresh checkout's first start says (protocol §9.11).

Owns: ``load_setup``, which makes the server's key if its seed file does not exist (as the
original did: the id is printed, the seed never leaves the machine), then reads the quorum
(``.keys``) and the genesis. When either is missing, or the quorum does not list this server,
it raises ``NotSetUp``: one message with this server's id and the exact commands that make
what is missing, for the caller to print (exit status 2, no traceback).

Invariants: the key is never overwritten; the commands printed name the very paths the server
was given, and the server command to run again is the one it was started with; a malformed file
(as opposed to a missing or empty one) is still a plain ``ConfigError`` naming the file.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from scryp.core.balances import TOTAL_SUPPLY
from scryp.core.genesis import Genesis
from scryp.crypto import KeyPair
from scryp.errors import ConfigError, MalformedInput
from scryp.keyfile import QUORUM_SIZES, load_or_create_key, parse_quorum
from scryp.server.config import ServerConfig

FAUCET_SEED = Path("keys/faucet.seed")  # the account the genesis gives the supply to


class NotSetUp(ConfigError):
    """The server's key exists, but its quorum or genesis does not: what to run is the text."""


@dataclass(frozen=True, slots=True)
class Setup:
    key: KeyPair
    quorum: list[bytes]
    genesis: Genesis
    key_made: bool  # the key was made by this start


def load_setup(config: ServerConfig, argv: list[str]) -> Setup:
    """The key (made if missing), quorum and genesis; ``NotSetUp`` saying what to run."""
    made = not config.key_file.exists()
    key = load_or_create_key(config.key_file)
    quorum = _read_quorum(config.quorum_file)  # None: missing or lists no server
    genesis = _read_genesis(config.genesis_file)  # None: missing
    if quorum is not None and genesis is not None and key.public in quorum:
        return Setup(key, quorum, genesis, made)
    raise NotSetUp(_message(config, argv, key=key, made=made, quorum=quorum, genesis=genesis))


def _read_quorum(path: Path) -> list[bytes] | None:
    try:
        text = path.read_text(encoding="utf-8")  # comments may be any text; keys are hex
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read quorum file {path}: {error}") from None
    if not any(line.strip() and not line.strip().startswith("#") for line in text.splitlines()):
        return None  # a fresh checkout's .keys: comments only
    try:
        return parse_quorum(text)
    except MalformedInput as error:
        raise ConfigError(f"{path}: {error}") from None


def _read_genesis(path: Path) -> Genesis | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ConfigError(f"genesis {path}: {error}") from None
    try:
        return Genesis.decode(data)
    except MalformedInput as error:
        raise ConfigError(f"genesis {path}: {error}") from None


def _python() -> str:
    """This interpreter, as the user can type it from here (relative inside the checkout)."""
    here = Path.cwd()
    executable = Path(sys.executable)
    try:
        return str(executable.relative_to(here))
    except ValueError:
        return sys.executable if executable.is_absolute() else "python"


def _message(
    config: ServerConfig,
    argv: list[str],
    *,
    key: KeyPair,
    made: bool,
    quorum: list[bytes] | None,
    genesis: Genesis | None,
) -> str:
    py = _python()
    q = shlex.quote
    seed, keys_file = str(config.key_file), str(config.quorum_file)
    genesis_file = str(config.genesis_file)
    lines = [
        f"this server is not set up yet (in {os.getcwd()})",
        f"{'made' if made else 'using'} its key: {seed} (secret, mode 0600; back it up)",
        f"its public id: {key.account_id}",
        "",
        "missing:",
    ]
    if quorum is None:
        lines.append(f"  - the quorum: {keys_file} lists no server ids")
    elif key.public not in quorum:
        lines.append(f"  - this server: its id is not among the {len(quorum)} in {keys_file}")
    if genesis is None:
        lines.append(f"  - the genesis: {genesis_file} does not exist")
    genesis_steps = []
    if genesis is None:
        if not FAUCET_SEED.exists():
            genesis_steps.append(f"  {py} -m scryp.keytool new {FAUCET_SEED}")
        genesis_steps.append(
            f"  {py} -m scryp.keytool genesis {FAUCET_SEED}={TOTAL_SUPPLY} --out {q(genesis_file)}"
        )
    again = f"  {shlex.join([py, '-m', 'scryp.server', *argv])}"
    if quorum is None:
        lines += ["", "to run a network of this one server (a quorum of 1, for trying it), run:"]
        lines += [f"  {py} -m scryp.keytool quorum {q(seed)} --out {q(keys_file)}"]
        lines += [*genesis_steps, again]
    elif key.public in quorum:
        lines += ["", "make the genesis once, copy that same file to every server, then start:"]
        lines += [*genesis_steps, again]
    sizes = "/".join(str(n) for n in QUORUM_SIZES if n > 1)
    lines += [
        "",
        f"for a quorum of {sizes} servers: start each server once to learn its id, then give",
        "every server the same quorum file (ids in the same order) and a copy of one genesis:",
        f"  {py} -m scryp.keytool quorum ID_OF_SERVER_0 ID_OF_SERVER_1 ID_OF_SERVER_2"
        f" --out {q(keys_file)}",
        "(README.md, 'Running a server'; docs/protocol.md §9.11)",
    ]
    return "\n".join(lines)
