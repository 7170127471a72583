"""The local test network on 127.0.0.1: ``python -m scryp.testnet [--dir DIR] [--servers N]``.

Today it prepares a network directory: server keys, ``.keys``, a faucet key holding the whole
supply and the genesis, plus ``testnet.json`` describing them. Starting the servers, the
private DHT and the seeders as processes comes with the server (see docs/protocol.md §9).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from scryp.errors import ConfigError
from scryp.keyfile import QUORUM_SIZES, atomic_write
from scryp.keytool import NetworkFiles, init_network


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scryp.testnet", description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path("testnet"))
    parser.add_argument("--servers", type=int, default=3, choices=QUORUM_SIZES)
    args = parser.parse_args(argv)
    try:
        servers, faucet, genesis = init_network(args.dir, args.servers)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    files = NetworkFiles(args.dir)
    description = {
        "network_id": genesis.network_id.hex(),
        "faucet": faucet.account_id,
        "faucet_seed_file": str(files.faucet_seed),
        "servers": [{"public_key": key.account_id} for key in servers],
    }
    atomic_write(args.dir / "testnet.json", json.dumps(description, indent=2).encode() + b"\n")
    print(f"network {genesis.network_id.hex()} in {args.dir}/")
    print(f"  faucet  {faucet.account_id}  (seed: {files.faucet_seed})")
    for index, key in enumerate(servers):
        print(f"  server {index}  {key.account_id}")
    print("Servers, the private DHT and seeders are not started yet: the server is not built.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
