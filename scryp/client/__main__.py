"""``python -m scryp.client``: dispatch to a subcommand, or download when given an infohash.

``python -m scryp.client INFOHASH [...]`` (the original's downloader) stays the bare form;
later subcommands are named first: ``python -m scryp.client <command> [...]``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from scryp.client import download

# name -> main(argv) of each subcommand; the bare form is "download".
COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "download": download.main,
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in COMMANDS:
        return COMMANDS[args[0]](args[1:])
    return download.main(args)


if __name__ == "__main__":
    sys.exit(main())
