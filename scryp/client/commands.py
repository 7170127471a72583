"""The everyday subcommands: ``new-key``, ``id``, ``pay``, ``balance``, ``history``,
``status`` (protocol §10.6). Each prints a short text, or one JSON object with ``--json``.
This module is the command line only (arguments, printing, exit status); the work is done by
``scryp.client.operations``, which the wallet page uses too.

Exit status: 0 done; 1 the network could not do it (no server answered, no majority
certificate, payment refused or not certified in time); 2 bad arguments or local files.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from scryp.client import operations
from scryp.client.operations import (
    BadArguments,
    InsufficientFunds,
    check_payee,
    parse_account,
    parse_amount,
)
from scryp.client.session import (
    KEY_FILE,
    add_common,
    data_dir,
    load_key,
    network_from,
    open_client,
)
from scryp.client.sync import MODES
from scryp.core.tx import AMOUNT_MAX, Transaction
from scryp.crypto import KeyPair, new_seed
from scryp.errors import ConfigError, NotAvailable, RemoteError
from scryp.keyfile import write_seed

EXIT_OK = 0
EXIT_NETWORK = 1
EXIT_USAGE = 2
PAY_TIMEOUT_S = 60.0
COMMAND_TIMEOUT_S = 300.0  # above every inner deadline (pointer wait, fetches, payment)


# -- commands: arguments in, a JSON-able result out (scryp.client.operations does the work) ----


async def run_balance(args: argparse.Namespace) -> dict[str, Any]:
    account = parse_account(args.account) if args.account else load_key(args).public
    async with open_client(network_from(args), data_dir(args)) as client:
        found = await operations.verified_balance(client, account, args.sync, args.min_round)
    return found.as_json()


def text_balance(result: dict[str, Any]) -> str:
    line = (
        f"{result['balance']} scryp  account {result['account']}\n"
        f"round {result['round']}, verified by {result['verified_by']} "
        f"(state {result['state_root'][:16]}…); {result['sync']} sync, "
        f"{result['bytes_downloaded']} bytes in {result['seconds']:.2f} s"
    )
    return line + (f"\n{result['fell_back']}" if result["fell_back"] else "")


async def run_history(args: argparse.Namespace) -> dict[str, Any]:
    account = parse_account(args.account) if args.account else load_key(args).public
    async with open_client(network_from(args), data_dir(args)) as client:
        found = await operations.history(client, account, args.sync, args.min_round)
    return found.as_json()


def text_history(result: dict[str, Any]) -> str:
    start = result.get("from_round")
    since = "the genesis" if start == 0 else f"round {start}" if start is not None else "-"
    lines = [f"account {result['account']}: {len(result['payments'])} payment(s) since {since}"]
    if result.get("archive_error"):
        lines.append(f"(history before round {start}: {result['archive_error']})")
    for p in result["payments"]:
        sign = "-" if p["direction"] == "out" else "+"
        word = "to  " if p["direction"] == "out" else "from"
        lines.append(f"round {p['round']:>6}  {sign}{p['amount']:>10}  {word} {p['counterparty']}")
    lines.append(f"balance {result['balance']} at round {result['round']}")
    return "\n".join(lines)


async def run_pay(args: argparse.Namespace) -> dict[str, Any]:
    payee = parse_account(args.payee)
    amount = parse_amount(args.amount)
    payer = load_key(args)
    check_payee(payer.public, payee)  # before opening a session: nothing to ask the network
    if args.no_check:
        # Skip the local funds check, so a refused overspend can be seen (protocol §10.6).
        apis = network_from(args).apis
        paid = await operations.send_payment(apis, payer, payee, amount, args.timeout_s)
        return paid.as_json()
    async with open_client(network_from(args), data_dir(args)) as client:
        paid = await operations.pay(client, payer, payee, amount, args.timeout_s)
    return paid.as_json()


def run_sign(args: argparse.Namespace) -> dict[str, Any]:
    """A signed payment, timestamped now, to send by hand (``curl --data-binary``)."""
    payee = parse_account(args.payee)
    amount = parse_amount(args.amount)
    payer = load_key(args)
    check_payee(payer.public, payee)
    tx = Transaction.create(payer, payee, amount, int(time.time() * 1000))
    return {"id": tx.tx_id.hex(), "transaction": tx.encode().hex(), "valid_for_s": 5}


def text_pay(result: dict[str, Any]) -> str:
    if result["status"] == "accepted":
        return (
            f"paid {result['amount']} scryp to {result['payee']}\n"
            f"accepted in certified round {result['round']} (tx {result['id']})"
        )
    return f"rejected in round {result['round']}: {result['reason']} (tx {result['id']})"


async def run_status(args: argparse.Namespace) -> dict[str, Any]:
    async with open_client(network_from(args), data_dir(args)) as client:
        found = await operations.status(client)
    return found.as_json()


def text_status(result: dict[str, Any]) -> str:
    if result["certified_round"] is None:
        head = "no majority-certified round found in the DHT"
    else:
        head = (
            f"certified round {result['certified_round']} (state {result['state_root'][:16]}…), "
            f"signed by servers {result['signers']}, pointers of {result['agreeing']} agree\n"
            f"  infohash {result['infohash']}"
        )
    lines = [head, "pointers (each server's latest round; infohash v1, for the downloader):"]
    for p in result["pointers"]:
        state = "no pointer" if p["round"] is None else f"round {p['round']}"
        cert = " certified" if p["certified"] else ""
        agree = " agrees" if p["agrees"] else ""
        lines.append(f"  server {p['index']} {p['public_key'][:16]}…  {state}{cert}{agree}")
        if p["infohash"]:
            lines.append(f"    infohash {p['infohash']}  state {p['state_root']}")
    for a in result["apis"]:
        state = f"{a['role']}, round {a['round']}" if a["up"] else "not answering"
        lines.append(f"  {a['api']}: {state}")
    if result["infohash"]:
        bootstrap = " ".join(f"--bootstrap {b}" for b in result["bootstrap"])
        lines.append(f"download: python -m scryp.client {result['infohash']} {bootstrap}".rstrip())
    return "\n".join(lines)


def run_new_key(args: argparse.Namespace) -> dict[str, Any]:
    path: Path = args.out if args.out else data_dir(args) / KEY_FILE
    if path.exists():
        raise ConfigError(f"{path} exists; refusing to overwrite a key")
    path.parent.mkdir(parents=True, exist_ok=True)
    seed = new_seed()
    write_seed(path, seed)
    return {"account": KeyPair.from_seed(seed).account_id, "seed_file": str(path)}


def run_id(args: argparse.Namespace) -> dict[str, Any]:
    return {"account": load_key(args).account_id}


# -- parsing and dispatch -----------------------------------------------------------------------

Runner = Callable[[argparse.Namespace], Awaitable[dict[str, Any]] | dict[str, Any]]


def build_parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m scryp.client {command}")
    add_common(parser)
    if command in ("pay", "sign", "balance", "history", "id"):
        parser.add_argument("--key", type=Path, metavar="SEEDFILE", help="the account's seed")
    if command in ("pay", "sign"):
        parser.add_argument("payee", help="the payee's account, 64 hex digits")
        parser.add_argument("amount", help=f"whole scryp, 1..{AMOUNT_MAX}")
    if command == "pay":
        parser.add_argument("--timeout-s", type=float, default=PAY_TIMEOUT_S)
        parser.add_argument(
            "--no-check",
            action="store_true",
            help="send without checking the verified balance first (to watch servers refuse)",
        )
    if command in ("balance", "history"):
        parser.add_argument("account", nargs="?", help="64 hex digits (default: your key)")
        parser.add_argument("--sync", choices=MODES, default="auto")
        parser.add_argument(
            "--min-round",
            type=int,
            default=0,
            metavar="R",
            help="wait (up to a minute) until the DHT pointers name round R or later",
        )
    if command == "new-key":
        parser.add_argument("--out", type=Path, help="seed file (default DATA/key.seed)")
    return parser


RUNNERS: dict[str, tuple[Runner, Callable[[dict[str, Any]], str]]] = {
    "pay": (run_pay, text_pay),
    "sign": (run_sign, lambda r: str(r["transaction"])),
    "balance": (run_balance, text_balance),
    "history": (run_history, text_history),
    "status": (run_status, text_status),
    "new-key": (run_new_key, lambda r: f"account {r['account']}\nseed in {r['seed_file']}"),
    "id": (run_id, lambda r: str(r["account"])),
}


def main_for(command: str) -> Callable[[list[str]], int]:
    def main(argv: list[str]) -> int:
        parser = build_parser(command)
        args = parser.parse_args(argv)
        run, text = RUNNERS[command]
        try:
            outcome = run(args)
            result = asyncio.run(bounded(outcome)) if asyncio.iscoroutine(outcome) else outcome
            assert isinstance(result, dict)
        except (ConfigError, BadArguments, InsufficientFunds) as error:
            return fail(args, str(error), EXIT_USAGE)
        except (RemoteError, NotAvailable) as error:
            return fail(args, str(error), EXIT_NETWORK)
        except TimeoutError:
            return fail(args, f"gave up after {COMMAND_TIMEOUT_S:g} s", EXIT_NETWORK)
        print(json.dumps(result) if args.json else text(result))
        if command == "pay" and result.get("status") != "accepted":
            return EXIT_NETWORK
        return EXIT_OK

    return main


async def bounded(work: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    """Every command ends by itself: a network that never answers is an error, not a hang."""
    async with asyncio.timeout(COMMAND_TIMEOUT_S):
        return await work


def fail(args: argparse.Namespace, message: str, code: int) -> int:
    if args.json:
        print(json.dumps({"error": message}))
    print(f"scryp: {message}", file=sys.stderr)
    return code


COMMANDS = {name: main_for(name) for name in RUNNERS}
