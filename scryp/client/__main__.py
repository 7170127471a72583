"""``python -m scryp.client``: dispatch to a subcommand, or download when given an infohash.

``python -m scryp.client INFOHASH [...]`` (the original's downloader) stays the bare form;
the subcommands are named first: ``python -m scryp.client <command> [...]`` with commands
``new-key``, ``id``, ``pay``, ``balance``, ``history``, ``status``, ``ui`` and ``download``
(protocol §10.6).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from scryp.client import commands, download, wallet

# name -> main(argv) of each subcommand; the bare form is "download".
COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "download": download.main,
    **commands.COMMANDS,
    "ui": wallet.main,
}


USAGE = """usage: python -m scryp.client INFOHASH [options]    download a round (--help: options)
       python -m scryp.client COMMAND [options]     COMMAND --help for its options

commands:
  new-key    make a key pair (a seed file, mode 0600) and print its account id
  id         print the account id of a seed file
  pay        pay PAYEE AMOUNT and wait until a certified round decides it (--no-check:
             skip the local funds check, to watch the servers refuse an overspend)
  sign       print a signed payment PAYEE AMOUNT as 280 hex digits, for curl (valid 5 s)
  balance    a balance verified by a majority certificate (light, incremental or full sync)
  history    the account's payments in the rounds this client synced
  status     the servers, their rounds, and who agrees
  ui         the wallet page on 127.0.0.1
  download   the same as the bare INFOHASH form
common options: --testnet DIR (a local network's testnet.json), --keys, --network MODE,
                --bootstrap HOST:PORT, --data DIR, --json
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print(USAGE, file=sys.stderr)
        return 2
    if args[0] in COMMANDS:
        return COMMANDS[args[0]](args[1:])
    if args[0] in ("-h", "--help"):
        print(USAGE)
    return download.main(args)


if __name__ == "__main__":
    sys.exit(main())
