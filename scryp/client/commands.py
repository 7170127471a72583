"""The everyday subcommands: ``new-key``, ``id``, ``pay``, ``balance``, ``history``,
``status`` (protocol §10.6). Each prints a short text, or one JSON object with ``--json``.

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

from scryp.client import servers
from scryp.client.session import (
    KEY_FILE,
    add_common,
    data_dir,
    load_key,
    network_from,
    open_client,
)
from scryp.client.store import Payment
from scryp.client.sync import MODES, Synced, read_balance
from scryp.core.tx import AMOUNT_MAX, Transaction
from scryp.crypto import KeyPair, new_seed, parse_public_key_hex
from scryp.errors import ConfigError, MalformedInput, NotAvailable, RemoteError
from scryp.keyfile import write_seed

EXIT_OK = 0
EXIT_NETWORK = 1
EXIT_USAGE = 2
PAY_TIMEOUT_S = 60.0
COMMAND_TIMEOUT_S = 300.0  # above every inner deadline (pointer wait, fetches, payment)


class BadArguments(MalformedInput):
    """The user's own input is wrong (payee format, amount): nothing was sent."""


class InsufficientFunds(MalformedInput):
    """The verified balance cannot cover the payment: nothing was sent."""


def parse_amount(text: str) -> int:
    try:
        amount = int(text)
    except ValueError:
        raise BadArguments(f"amount {text!r} is not a whole number of scryp") from None
    if not 1 <= amount <= AMOUNT_MAX:
        raise BadArguments(f"amount must be 1..{AMOUNT_MAX} scryp, got {amount}")
    return amount


def parse_account(text: str) -> bytes:
    try:
        return parse_public_key_hex(text.lower())
    except MalformedInput as error:
        raise BadArguments(f"account {text!r}: {error}") from None


def synced_json(synced: Synced, account: bytes | None) -> dict[str, Any]:
    verified = synced.round
    return {
        "account": account.hex() if account else None,
        "balance": synced.balance,
        "round": verified.round,
        "state_hash": verified.record.state_hash.hex(),
        "infohash": verified.record.infohash.hex(),
        "network": verified.record.network.hex(),
        "sync": synced.mode,
        "fell_back": synced.fell_back or None,
        "bytes_downloaded": synced.bytes_downloaded,
        "seconds": round(synced.seconds, 3),
        "signers": list(verified.signers),
        "servers": verified.quorum_size,
        "verified_by": f"{len(verified.signers)} of {verified.quorum_size} servers",
    }


def payment_json(account: bytes, payment: Payment) -> dict[str, Any]:
    tx = payment.tx
    outgoing = tx.payer == account
    return {
        "round": payment.round,
        "id": tx.tx_id.hex(),
        "timestamp_ms": tx.timestamp_ms,
        "direction": "out" if outgoing else "in",
        "amount": tx.amount,
        "counterparty": (tx.payee if outgoing else tx.payer).hex(),
    }


# -- commands -----------------------------------------------------------------------------------


async def run_balance(args: argparse.Namespace) -> dict[str, Any]:
    account = parse_account(args.account) if args.account else load_key(args).public
    async with open_client(network_from(args), data_dir(args)) as client:
        synced = await client.sync_latest(args.sync, account, args.min_round)
    return synced_json(synced, account)


def text_balance(result: dict[str, Any]) -> str:
    line = (
        f"{result['balance']} scryp  account {result['account']}\n"
        f"round {result['round']}, verified by {result['verified_by']} "
        f"(state {result['state_hash'][:16]}…); {result['sync']} sync, "
        f"{result['bytes_downloaded']} bytes in {result['seconds']:.2f} s"
    )
    return line + (f"\n{result['fell_back']}" if result["fell_back"] else "")


async def run_history(args: argparse.Namespace) -> dict[str, Any]:
    account = parse_account(args.account) if args.account else load_key(args).public
    async with open_client(network_from(args), data_dir(args)) as client:
        mode = args.sync
        synced = await client.sync_latest(mode, None if mode == "auto" else account, args.min_round)
        store = client.store(synced.round)
        payments = [payment_json(account, p) for p in store.payments(account)]
    result = synced_json(synced, account)
    held = store.held()
    result["balance"] = read_balance(held, account) if held else None
    result["payments"] = payments
    return result


def text_history(result: dict[str, Any]) -> str:
    lines = [f"account {result['account']}: {len(result['payments'])} payment(s) synced"]
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
    if payee == payer.public:
        raise BadArguments("payer and payee are the same account")
    network = network_from(args)
    async with open_client(network, data_dir(args)) as client:
        synced = await client.sync_latest("auto", payer.public)
        if (synced.balance or 0) < amount:
            # DHT pointers can lag the servers by a few rounds: before refusing, wait for the
            # round the servers say is certified (a hint only: the balance is still verified).
            reported = [s.get("certified_round") for s in await servers.statuses(client.apis) if s]
            newest = max((r for r in reported if isinstance(r, int)), default=0)
            if newest > synced.round.round:
                synced = await client.sync_latest("auto", payer.public, newest)
        verified = synced.round
        balance = synced.balance or 0
        if balance < amount:
            raise InsufficientFunds(
                f"insufficient funds: {balance} scryp at round {verified.round} "
                f"(verified by {len(verified.signers)} of {verified.quorum_size}), "
                f"paying {amount}; nothing was sent"
            )
        return await pay_and_wait(client.apis, payer, payee, amount, args.timeout_s)


async def pay_and_wait(
    apis: tuple[str, ...], payer: KeyPair, payee: bytes, amount: int, timeout_s: float
) -> dict[str, Any]:
    tx = Transaction.create(payer, payee, amount, int(time.time() * 1000))
    server = await servers.submit(apis, tx)
    outcome = await servers.wait_certified(apis, tx, timeout_s)
    return {
        "id": tx.tx_id.hex(),
        "payer": payer.account_id,
        "payee": payee.hex(),
        "amount": amount,
        "status": "accepted" if outcome.accepted else "rejected",
        "reason": outcome.reason,
        "round": outcome.round,
        "submitted_to": server,
    }


def text_pay(result: dict[str, Any]) -> str:
    if result["status"] == "accepted":
        return (
            f"paid {result['amount']} scryp to {result['payee']}\n"
            f"accepted in certified round {result['round']} (tx {result['id']})"
        )
    return f"rejected in round {result['round']}: {result['reason']} (tx {result['id']})"


async def run_status(args: argparse.Namespace) -> dict[str, Any]:
    network = network_from(args)
    async with open_client(network, data_dir(args)) as client:
        try:
            verified = await client.latest()
        except RemoteError:
            verified = None
        records, _ = await client.swarm.get_pointers(network.quorum)
        apis = client.apis
        statuses = await servers.statuses(apis)
    pointers = []
    for index, key in enumerate(network.quorum):
        record = records.get(key)
        pointers.append(
            {
                "index": index,
                "public_key": key.hex(),
                "round": record.round if record else None,
                "state_hash": record.state_hash.hex() if record else None,
                "certified": bool(record and record.certificate),
                "api": record.api if record else None,
                "refused": str(client.refused[key]) if key in client.refused else None,
                "agrees": bool(
                    verified and record and record.statement == verified.record.statement
                ),
            }
        )
    return {
        "servers": len(network.quorum),
        "certified_round": verified.round if verified else None,
        "state_hash": verified.record.state_hash.hex() if verified else None,
        "signers": list(verified.signers) if verified else [],
        "agreeing": list(verified.vouching) if verified else [],
        "pointers": pointers,
        "apis": [
            {
                "api": api,
                "up": status is not None,
                "role": status.get("role") if status else None,
                "round": status.get("round") if status else None,
                "certified_round": status.get("certified_round") if status else None,
            }
            for api, status in zip(apis, statuses, strict=True)
        ],
    }


def text_status(result: dict[str, Any]) -> str:
    if result["certified_round"] is None:
        head = "no majority-certified round found in the DHT"
    else:
        head = (
            f"certified round {result['certified_round']} (state {result['state_hash'][:16]}…), "
            f"signed by servers {result['signers']}, pointers of {result['agreeing']} agree"
        )
    lines = [head]
    for p in result["pointers"]:
        state = "no pointer" if p["round"] is None else f"round {p['round']}"
        cert = " certified" if p["certified"] else ""
        agree = " agrees" if p["agrees"] else ""
        lines.append(f"  server {p['index']} {p['public_key'][:16]}…  {state}{cert}{agree}")
    for a in result["apis"]:
        state = f"{a['role']}, round {a['round']}" if a["up"] else "not answering"
        lines.append(f"  {a['api']}: {state}")
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
    if command in ("pay", "balance", "history", "id"):
        parser.add_argument("--key", type=Path, metavar="SEEDFILE", help="the account's seed")
    if command == "pay":
        parser.add_argument("payee", help="the payee's account, 64 hex digits")
        parser.add_argument("amount", help=f"whole scryp, 1..{AMOUNT_MAX}")
        parser.add_argument("--timeout-s", type=float, default=PAY_TIMEOUT_S)
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
