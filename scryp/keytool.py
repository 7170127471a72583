"""The key tool: key pairs, public ids, ``.keys`` quorum files and genesis files (§2, §5).

python -m scryp.keytool new keys/alice.seed        # make a key pair, print its id
python -m scryp.keytool id keys/alice.seed         # print the id of an existing key
python -m scryp.keytool quorum keys/s0.seed keys/s1.seed keys/s2.seed --out .keys
python -m scryp.keytool genesis ID=AMOUNT ... --out genesis  # ID: 64 hex or a seed file
python -m scryp.keytool genesis --random-accounts N --faucet keys/faucet.seed [--seed S] \
    [ID=AMOUNT ...] --out genesis        # N random accounts; the faucet keeps the rest
python -m scryp.keytool init DIR --servers 3       # everything a new network needs
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from scryp.core.balances import TOTAL_SUPPLY
from scryp.core.genesis import Genesis
from scryp.crypto import KeyPair, parse_public_key_hex
from scryp.errors import ConfigError, MalformedInput
from scryp.keyfile import (
    QUORUM_SIZES,
    atomic_write,
    load_or_create_key,
    read_seed,
    write_quorum,
)
from scryp.random_genesis import write_random_genesis


@dataclass(frozen=True, slots=True)
class NetworkFiles:
    """Where a network directory keeps its files (created by ``init``)."""

    root: Path

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @property
    def quorum(self) -> Path:
        return self.root / ".keys"

    @property
    def genesis(self) -> Path:
        return self.root / "genesis"

    @property
    def faucet_seed(self) -> Path:
        return self.keys_dir / "faucet.seed"

    def server_seed(self, index: int) -> Path:
        return self.keys_dir / f"server-{index}.seed"


def init_network(root: Path, servers: int) -> tuple[list[KeyPair], KeyPair, Genesis]:
    """Create (or reuse) server keys, ``.keys``, a faucet key and a genesis under ``root``.

    Idempotent: existing keys are kept, so a second run describes the same network. The
    genesis gives the whole supply to the faucet (protocol §5.2).
    """
    if servers not in QUORUM_SIZES:
        raise ConfigError(f"a quorum has {QUORUM_SIZES} servers, not {servers}")
    files = NetworkFiles(Path(root))
    files.keys_dir.mkdir(parents=True, exist_ok=True)
    server_keys = [load_or_create_key(files.server_seed(i)) for i in range(servers)]
    faucet = load_or_create_key(files.faucet_seed)
    write_quorum(files.quorum, [key.public for key in server_keys])
    if files.genesis.exists():
        try:
            genesis = Genesis.decode(files.genesis.read_bytes())
        except MalformedInput as error:
            raise ConfigError(f"{files.genesis}: {error}") from None
    else:
        genesis = Genesis.single(faucet.public)
        atomic_write(files.genesis, genesis.encode())
    return server_keys, faucet, genesis


def _parse_allocation(text: str) -> tuple[bytes, int]:
    """``ID=AMOUNT``, where ID is 64 hex digits or a seed file (its account)."""
    account, sep, amount = text.rpartition("=")
    if not sep:
        raise MalformedInput(f"expected ID=AMOUNT, got {text!r}")
    try:
        value = int(amount)
    except ValueError:
        raise MalformedInput(f"amount is not a whole number: {amount!r}") from None
    return _key_or_seed_file(account), value


def _key_or_seed_file(text: str) -> bytes:
    path = Path(text)
    if path.exists():
        return KeyPair.from_seed(read_seed(path)).public
    return parse_public_key_hex(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scryp.keytool",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    new = commands.add_parser("new", help="make a key pair; print its public id")
    new.add_argument("seed_file", type=Path)
    show = commands.add_parser("id", help="print the public id of a seed file")
    show.add_argument("seed_file", type=Path)
    quorum = commands.add_parser("quorum", help="write a .keys file (server order as given)")
    quorum.add_argument("servers", nargs="+", help="seed files or 64-hex public keys")
    quorum.add_argument("--out", type=Path, default=Path(".keys"))
    genesis = commands.add_parser("genesis", help=f"write a genesis (sum {TOTAL_SUPPLY})")
    genesis.add_argument(
        "allocations", nargs="*", metavar="ID=AMOUNT", help="ID: 64 hex digits or a seed file"
    )
    genesis.add_argument("--out", type=Path, default=Path("genesis"))
    genesis.add_argument(
        "--random-accounts",
        type=int,
        metavar="N",
        help="add N random accounts of 1..1000 scryp each (test and benchmark networks)",
    )
    genesis.add_argument(
        "--faucet", help="with --random-accounts: the account (hex or seed file) keeping the rest"
    )
    genesis.add_argument(
        "--seed", type=int, help="with --random-accounts: seed, for a reproducible file"
    )
    init = commands.add_parser("init", help="server keys, .keys, faucet key and genesis")
    init.add_argument("dir", type=Path)
    init.add_argument("--servers", type=int, default=3, choices=QUORUM_SIZES)
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except (ConfigError, MalformedInput) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.command == "new":
        if args.seed_file.exists():
            raise ConfigError(f"{args.seed_file} exists; refusing to overwrite a key")
        print(load_or_create_key(args.seed_file).account_id)
    elif args.command == "id":
        print(KeyPair.from_seed(read_seed(args.seed_file)).account_id)
    elif args.command == "quorum":
        keys = [_key_or_seed_file(item) for item in args.servers]
        write_quorum(args.out, keys)
        print(f"wrote {args.out}: {len(keys)} servers")
    elif args.command == "genesis":
        allocations: dict[bytes, int] = {}
        for item in args.allocations:
            account, amount = _parse_allocation(item)
            if account in allocations:
                raise MalformedInput(f"account {account.hex()} allocated twice")
            allocations[account] = amount
        if args.random_accounts is not None:
            return _random_genesis(args, allocations)
        if args.faucet is not None or args.seed is not None:
            raise ConfigError("--faucet and --seed go with --random-accounts")
        if not allocations:
            raise ConfigError("give ID=AMOUNT allocations, or --random-accounts N --faucet ID")
        made = Genesis.from_allocations(allocations)
        atomic_write(args.out, made.encode())
        print(f"wrote {args.out}: network id {made.network_id.hex()}")
    else:
        servers, faucet, made = init_network(args.dir, args.servers)
        files = NetworkFiles(args.dir)
        print(f"network id {made.network_id.hex()}")
        print(f"quorum     {files.quorum} ({len(servers)} servers)")
        print(f"faucet     {faucet.account_id} (seed in {files.faucet_seed})")
    return 0


def _random_genesis(args: argparse.Namespace, fixed: dict[bytes, int]) -> int:
    if args.faucet is None:
        raise ConfigError("--random-accounts needs --faucet ID (hex or seed file)")
    seed = args.seed if args.seed is not None else secrets.randbits(64)
    started = time.perf_counter()
    size, network_id = write_random_genesis(
        args.out, args.random_accounts, _key_or_seed_file(args.faucet), fixed, seed
    )
    took_s = time.perf_counter() - started
    print(
        f"wrote {args.out}: {size // 36} accounts, {size} bytes, seed {seed}, "
        f"{took_s:.1f} s; network id {network_id.hex()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
