"""Client syncs on the round layout servers write since stage B (issue 10; protocol §4.4.4,
§10.3-§10.4), at any scale, optionally over a capped link, with a same-run baseline.

Run through ``python -m benchmarks.bench_sync --checkpoint-every K ...`` (see there).

Rounds: ``tests.support.synthetic.build_checkpoint_rounds``: a random genesis of
``--accounts`` accounts, then round C = K, a checkpoint (whole ``balances``), and rounds
C+1..C+D (``--delta-rounds``), each ``--payments`` signed payments, its files made by the
servers' own ``round_contents`` (``changes``, ``transactions``, ``window``). One "server"
libtorrent session seeds them all (upload capped at ``--cap-bytes-per-s`` if given, with
loopback mapped to libtorrent's global peer class so the cap applies), a second session is the
private DHT's bootstrap node, and a stand-in server API (``tests.support.standin``, aiohttp on
127.0.0.1) answers ``GET /rounds`` (certified entries, checkpoints marked),
``GET /proof/ID?round=R`` and ``GET /changes?since=C&round=R`` (one body of the net changes of
a range of rounds, protocol §10.4.1; paced to the same cap) from the round files, as
``scryp.server.view`` does. Nothing runs Raft: rounds and certificates are made directly with
the server keys.

Then, each with a fresh client (``open_client``: its own read-only session, its own data
directory, closed at the end), the real ``Client.sync``:
- pointers at C: light by pieces (no server API known: interpolation search in C's
  ``balances``), for a payer and a random account; full of the checkpoint round itself;
- pointers at R-1: full (the checkpoint's ``balances`` plus the net changes of D-1 rounds, in
  one ``GET /changes`` answer, or D-1 ``changes`` torrents with ``--no-changes-range``), kept
  as the held round of the incremental row;
- pointers at R: full (nothing held), light by proof (payer, random account), incremental
  (R-1 held: R's ``transactions``), full with R-1 held (R's ``changes`` only).

Baselines, in the same run, of the full sync at R's payload bytes (what it downloaded: pieces
and the ``GET /changes`` body): a plain
TCP copy of that many bytes on 127.0.0.1, the sender paced to the cap (a token bucket), and one
libtorrent transfer of a single-file torrent of those bytes from the same capped session to a
fresh client session. The first is the goal's "plain copy over the same link"; the second
shows how much of the gap is libtorrent itself. Each sync row also reports where its time
went (``phases``): the client's calls (listing, fetches by file, apply, state root, write)
wrapped for the measurement, each with its call count, summed seconds and wall span.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import libtorrent as lt

import scryp.client.servers as client_servers
import scryp.client.sync as client_sync
from scryp.client.network import Network
from scryp.client.session import open_client
from scryp.core import snapshot
from scryp.core.balances import RECORD
from scryp.core.certificate import majority
from scryp.crypto import KeyPair
from scryp.swarm import (
    SERVER_OPTIMISTIC_UNCHOKE_INTERVAL_S,
    SERVER_SEED_PIECE_QUOTA,
    SERVER_UNCHOKE_SLOTS,
    RoundTorrent,
    Swarm,
    SwarmConfig,
    build_round_torrent,
)
from scryp.swarm.fetch import Fetching
from tests.support.standin import StandIn
from tests.support.synthetic import (
    SyntheticRound,
    build_checkpoint_rounds,
    payer_keys,
    publish,
    server_keys,
)

FETCH_BUDGET_S = 600.0  # a whole sync, however slow the link; the fetches have their own
NETWORK_ID = bytes(range(32))
COPY_CHUNK = 64 * 1024


# -- where a sync's time goes -----------------------------------------------------------------


class Phases:
    """Spans of the client's calls during one sync, by label (measurement only: the sync
    module's names are wrapped while ``patched`` is active and restored after)."""

    def __init__(self) -> None:
        self.spans: dict[str, list[tuple[float, float, int]]] = {}

    def note(self, label: str, started: float, size: int = 0) -> None:
        self.spans.setdefault(label, []).append((started, time.monotonic(), size))

    def timed(self, label: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.monotonic()
            try:
                return function(*args, **kwargs)
            finally:
                self.note(label, started)

        return wrapper

    def timed_async(self, label: str, function: Callable[..., Awaitable[Any]]) -> Any:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.monotonic()
            try:
                return await function(*args, **kwargs)
            finally:
                self.note(label, started)

        return wrapper

    @contextlib.contextmanager
    def patched(self) -> Iterator[None]:
        fetch, pieces = Fetching.fetch, Fetching.fetch_pieces
        phases = self

        async def timed_fetch(swarm: Fetching, *args: Any, **kwargs: Any) -> Any:
            files = kwargs.get("files")
            label = "fetch " + (
                "+".join(files) if files else "pieces" if "pieces" in kwargs else "all"
            )
            started = time.monotonic()
            result = await fetch(swarm, *args, **kwargs)
            phases.note(label, started, result.payload_bytes_downloaded)
            return result

        async def timed_changes(api: str, since: int, round_number: int) -> bytes | None:
            started = time.monotonic()  # GET /changes (§10.4.1)
            body = await changes(api, since, round_number)
            phases.note("get_changes_range", started, len(body or b""))
            return body

        module = vars(client_sync)
        names = (
            "apply_rounds",
            "state_root",
            "atomic_write",
            "read_balance",
            "replay_to",
            "check_balances_file",
        )
        saved = {name: module[name] for name in names}
        listing, changes = client_servers.round_listing, client_servers.changes
        try:
            for name in names:
                module[name] = self.timed(name, saved[name])
            client_servers.round_listing = self.timed_async("round_listing", listing)
            client_servers.changes = timed_changes
            Fetching.fetch = timed_fetch  # type: ignore[method-assign,assignment]
            Fetching.fetch_pieces = self.timed_async("fetch_pieces", pieces)  # type: ignore[method-assign]
            yield
        finally:
            module.update(saved)
            client_servers.round_listing, client_servers.changes = listing, changes
            Fetching.fetch, Fetching.fetch_pieces = fetch, pieces  # type: ignore[method-assign]

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per label: calls, summed seconds, wall seconds (the union of the spans: parallel
        fetches overlap), bytes downloaded (fetches, GET /changes bodies)."""
        found = {}
        for label, spans in self.spans.items():
            wall, reach = 0.0, float("-inf")
            for start, end, _ in sorted(spans):
                wall += max(0.0, end - max(start, reach))
                reach = max(reach, end)
            found[label] = {
                "calls": len(spans),
                "seconds": round(sum(end - start for start, end, _ in spans), 3),
                "wall_seconds": round(wall, 3),
                "bytes": sum(size for _, _, size in spans),
            }
        return found


# -- baselines: the same bytes over the same cap ----------------------------------------------


async def tcp_copy(path: Path, size: int, cap: int) -> float:
    """Seconds to copy the first ``size`` bytes of ``path`` over one TCP connection on
    127.0.0.1, the sender writing at most ``cap`` bytes/s (0: as fast as it can), from the
    client's connect to its last byte."""

    async def send(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        started, sent = time.monotonic(), 0
        with path.open("rb") as file:
            while sent < size:
                if cap:
                    due = started + sent / cap
                    if due > time.monotonic():
                        await asyncio.sleep(due - time.monotonic())
                chunk = file.read(min(COPY_CHUNK, size - sent))
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(send, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        started = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        received = 0
        while received < size:
            chunk = await asyncio.wait_for(reader.read(1 << 20), FETCH_BUDGET_S)
            if not chunk:
                raise ConnectionError(f"the copy ended after {received} of {size} bytes")
            received += len(chunk)
        seconds = time.monotonic() - started
        writer.close()
        await writer.wait_closed()
        return seconds
    finally:
        server.close()
        await server.wait_closed()


def single_file_torrent(path: Path) -> RoundTorrent:
    """A one-file torrent of ``path`` with the rounds' parameters (16 KiB pieces, v1+v2)."""
    files = lt.file_storage()
    files.add_file(path.name, path.stat().st_size)
    creator = lt.create_torrent(files, snapshot.PIECE_BYTES)
    lt.set_piece_hashes(creator, str(path.parent))
    torrent = lt.bencode(creator.generate())
    hashes = lt.torrent_info(torrent).info_hashes()
    return RoundTorrent(path.name, bytes(torrent), hashes.v1.to_bytes(), hashes.v2.to_bytes())


async def torrent_copy(server: Swarm, network: Network, path: Path, work: Path) -> dict[str, Any]:
    """One libtorrent transfer of ``path`` as a single-file torrent, seeded by the (capped)
    server session, fetched by a fresh client session: (seconds, payload bytes)."""
    torrent = await asyncio.to_thread(single_file_torrent, path)
    await server.seed(path, torrent)  # seeds from path's directory
    try:
        async with open_client(network, work / "data") as client:
            started = time.monotonic()
            result = await client.swarm.fetch(
                torrent.infohash,
                work / "fetched",
                timeout_s=FETCH_BUDGET_S,
                peers=network.torrent_peers,
            )
            seconds = time.monotonic() - started
    finally:
        await server.remove(torrent.infohash)
    return {"seconds": round(seconds, 3), "bytes": result.payload_bytes_downloaded}


async def baselines(
    server: Swarm,
    network: Network,
    rounds: list[SyntheticRound],
    size: int,
    *,
    cap: int,
    work: Path,
) -> dict[str, Any]:
    """A file of ``size`` bytes (the checkpoint's balances and the changes files, in that
    order, zero-padded: the bytes a full sync fetches) copied both ways."""
    work.mkdir(parents=True, exist_ok=True)
    path = work / "copy" / "same-bytes"
    path.parent.mkdir()
    with path.open("wb") as out:
        for chosen in rounds:
            for name in (snapshot.BALANCES, snapshot.CHANGES):
                source = chosen.round_dir / name
                if source.is_file() and out.tell() < size:
                    with source.open("rb") as file:
                        shutil.copyfileobj(file, out)
        out.truncate(size)
    tcp = await tcp_copy(path, size, cap)
    lt_copy = await torrent_copy(server, network, path, work / "torrent")
    shutil.rmtree(work)
    return {"bytes": size, "tcp_copy_seconds": round(tcp, 3), "libtorrent_copy": lt_copy}


# -- the scenario -----------------------------------------------------------------------------


async def client_run(
    network: Network, data: Path, mode: str, account: bytes | None
) -> dict[str, Any]:
    """One client, as ``python -m scryp.client balance`` runs it (see bench_sync), with the
    spans of its calls."""
    phases = Phases()
    async with open_client(network, data) as client:
        started = time.monotonic()
        verified = await client.latest()
        with phases.patched():
            try:
                synced = await asyncio.wait_for(
                    client.sync(verified, mode, account), FETCH_BUDGET_S
                )
            except Exception as error:  # a failed row is a figure too: say what failed
                return {
                    "mode": mode,
                    "round": verified.round,
                    "error": f"{type(error).__name__}: {error}",
                    "seconds_to_error": round(time.monotonic() - started, 3),
                    "phases": phases.summary(),
                }
        return {
            "mode": synced.mode,
            "round": verified.round,
            "balance": synced.balance,
            "bytes_downloaded": synced.bytes_downloaded,
            "sync_seconds": round(synced.seconds, 3),
            "seconds_with_pointer_lookup": round(time.monotonic() - started, 3),
            "fell_back": synced.fell_back,
            "phases": phases.summary(),
        }


@contextlib.asynccontextmanager
async def seeding(
    rounds: list[SyntheticRound],
    keys: list[KeyPair],
    config: Callable[[Swarm], SwarmConfig],
) -> AsyncIterator[tuple[Swarm, Network]]:
    """A private DHT's boot node and a server session (``config`` of the boot node) seeding
    every round; yields the server and the network a client syncs from."""
    async with Swarm.start(SwarmConfig()) as boot, Swarm.start(config(boot)) as server:
        boot.add_dht_node(*server.address)
        await server.wait_dht_ready()
        for chosen in rounds:
            await server.seed(chosen.round_dir, chosen.torrent)
        yield (
            server,
            Network(
                quorum=tuple(k.public for k in keys),
                bootstrap=(boot.address,),
                torrent_peers=(server.address,),
                network_id=NETWORK_ID,
            ),
        )


def server_config(args: argparse.Namespace, boot: Swarm) -> SwarmConfig:
    """The seeding session: servers' choking profile (``--seed-profile server``, what
    ``scryp.server`` runs) or libtorrent's defaults; the cap on every address."""
    profile: dict[str, Any] = {}
    if args.seed_profile == "server":
        profile = {
            "unchoke_slots": SERVER_UNCHOKE_SLOTS,
            "seed_piece_quota": SERVER_SEED_PIECE_QUOTA,
            "optimistic_unchoke_interval_s": SERVER_OPTIMISTIC_UNCHOKE_INTERVAL_S,
        }
    return SwarmConfig(
        bootstrap=(boot.address,),
        upload_rate_limit_bytes_per_s=args.cap_bytes_per_s,
        rate_limit_loopback=bool(args.cap_bytes_per_s),
        **profile,
    )


def expected_full_bytes(rounds: list[SyntheticRound]) -> int:
    """The bytes a full sync of the last round fetches (the checkpoint's balances and each
    later round's changes, in whole pieces): the baseline's size when the full row failed."""
    sizes = [(rounds[0].round_dir / snapshot.BALANCES).stat().st_size]
    sizes += [(r.round_dir / snapshot.CHANGES).stat().st_size for r in rounds[1:]]
    return sum(-(-size // snapshot.PIECE_BYTES) * snapshot.PIECE_BYTES for size in sizes)


def metadata_bytes(torrent: RoundTorrent) -> int:
    """The info dict's size: what BEP 9 carries before any piece of the torrent."""
    return len(bytes(lt.torrent_info(torrent.torrent).info_section()))


def a_random_account(chosen: SyntheticRound) -> bytes:
    """The account in the middle of the checkpoint's balances: a random genesis id."""
    path = chosen.round_dir / snapshot.BALANCES
    with path.open("rb") as file:
        file.seek(path.stat().st_size // RECORD.size // 2 * RECORD.size)
        account: bytes = RECORD.unpack(file.read(RECORD.size))[0]
    return account


async def syncs(
    server: Swarm, networks: tuple[Network, Network], rounds: list[SyntheticRound], work: Path
) -> dict[str, dict[str, Any]]:
    """Every row (see the module header), pointers moved from C to R-1 to R on the way."""
    bare, helped = networks
    keys = server_keys(3)
    payer, other = payer_keys(1)[0].public, a_random_account(rounds[0])
    results: dict[str, dict[str, Any]] = {}

    async def run(row: str, network: Network, data: str, mode: str, account: bytes) -> None:
        results[row] = await client_run(network, work / data, mode, account)
        print(f"{row}: {json.dumps(results[row])}", file=sys.stderr, flush=True)  # as it goes

    await publish(server, NETWORK_ID, rounds, keys, upto=1)
    await run("light_pieces_payer", bare, "lp1", "light", payer)
    await run("light_pieces_random", bare, "lp2", "light", other)
    await run("full_checkpoint", helped, "fc", "full", payer)
    shutil.rmtree(work / "fc", ignore_errors=True)
    await publish(server, NETWORK_ID, rounds, keys, upto=len(rounds) - 1)
    await run("full_previous", helped, "incremental", "full", payer)
    await publish(server, NETWORK_ID, rounds, keys, upto=len(rounds))
    shutil.copytree(work / "incremental", work / "reuse")
    await run("full", helped, "full", "full", payer)
    shutil.rmtree(work / "full", ignore_errors=True)
    await run("light_proof_payer", helped, "l1", "light", payer)
    await run("light_proof_random", helped, "l2", "light", other)
    await run("incremental", helped, "incremental", "incremental", payer)
    await run("full_reuse", helped, "reuse", "full", payer)
    return results


def goals(
    results: dict[str, dict[str, Any]], base: dict[str, Any], tx_bytes: int
) -> dict[str, Any]:
    """The issue's three goals against this run's figures (None where a row failed)."""

    def worst(prefix: str, key: str) -> Any:
        rows = [r for k, r in results.items() if k.startswith(prefix)]
        return None if any("error" in r for r in rows) else max(r[key] for r in rows)

    def ratio(row: str, key: str, against: float) -> float | None:
        value = results[row].get(key)
        return None if value is None else round(value / against, 3)

    pieces = {
        k: -(-r.get("bytes_downloaded", 0) // snapshot.PIECE_BYTES) for k, r in results.items()
    }
    return {
        "light_by_proof_pieces_max": max(v for k, v in pieces.items() if "light_proof" in k),
        "light_by_proof_seconds_max": worst("light_proof", "sync_seconds"),
        "light_by_pieces_pieces_max": max(v for k, v in pieces.items() if "light_pieces" in k),
        "light_by_pieces_seconds_max": worst("light_pieces", "sync_seconds"),
        "full_over_tcp_copy": ratio("full", "sync_seconds", base["tcp_copy_seconds"]),
        "full_over_libtorrent_copy": ratio(
            "full", "sync_seconds", base["libtorrent_copy"]["seconds"]
        ),
        "full_checkpoint_over_tcp_copy": ratio(
            "full_checkpoint", "sync_seconds", base["tcp_copy_seconds"]
        ),
        "incremental_over_payment_bytes": ratio("incremental", "bytes_downloaded", tx_bytes),
    }


async def main_async(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    keys, payers = server_keys(3), payer_keys(10)
    loadavg_start = os.getloadavg()
    started = time.monotonic()
    rounds = await asyncio.to_thread(
        partial(
            build_checkpoint_rounds,
            checkpoint_every=args.checkpoint_every,
            delta_rounds=args.delta_rounds,
            new_account_every=args.new_account_every,
        ),
        work / "server",
        args.accounts,
        payers,
        args.payments,
        build_round_torrent,
    )
    build_s = time.monotonic() - started
    standin = StandIn(
        rounds,
        keys,
        args.checkpoint_every,
        majority(len(keys)),
        network=NETWORK_ID,
        cap_bytes_per_s=args.cap_bytes_per_s,
        ranges=not args.no_changes_range,
    )
    async with (
        seeding(rounds, keys, partial(server_config, args)) as (server, bare),
        standin.serving() as api,
    ):
        helped = dataclasses.replace(bare, apis=(api,))
        results = await syncs(server, (bare, helped), rounds, work / "clients")
        size = results["full"].get("bytes_downloaded") or expected_full_bytes(rounds)
        base = await baselines(
            server, bare, rounds, size, cap=args.cap_bytes_per_s, work=work / "base"
        )
    found = report(
        args, rounds, results, base, build_s=build_s, loadavg=(loadavg_start, os.getloadavg())
    )
    found["changes_range_answers"] = [  # GET /changes bodies served (protocol §10.4.1)
        {"since": since, "round": last, "bytes": size} for since, last, size in standin.served
    ]
    return found


def report(
    args: argparse.Namespace,
    rounds: list[SyntheticRound],
    results: dict[str, dict[str, Any]],
    base: dict[str, Any],
    *,
    build_s: float,
    loadavg: tuple[tuple[float, ...], tuple[float, ...]],
) -> dict[str, Any]:
    checkpoint, last = rounds[0], rounds[-1]
    changes = [(r.round_dir / snapshot.CHANGES).stat().st_size for r in rounds[1:]]
    balances_bytes = (checkpoint.round_dir / snapshot.BALANCES).stat().st_size
    at_c = {results[k].get("balance") for k in ("light_pieces_payer", "full_checkpoint")}
    at_r = {
        results[k].get("balance")
        for k in ("full", "light_proof_payer", "incremental", "full_reuse")
    }
    return {
        "layout": "stage B: a checkpoint round, then delta rounds (round_contents)",
        "accounts_at_checkpoint": balances_bytes // RECORD.size,
        "checkpoint_every": args.checkpoint_every,
        "checkpoint_round": checkpoint.round,
        "last_round": last.round,
        "payments_per_round": args.payments,
        "new_account_every": args.new_account_every,
        "cap_bytes_per_s": args.cap_bytes_per_s,
        "seed_profile": args.seed_profile,
        "changes_range_served": not args.no_changes_range,
        "checkpoint_balances_bytes": balances_bytes,
        "changes_bytes_after_checkpoint": sum(changes),
        "last_round_changes_bytes": changes[-1] if changes else 0,
        "last_round_transactions_bytes": last.transactions_bytes,
        "metadata_bytes": {
            "checkpoint": metadata_bytes(checkpoint.torrent),
            "last_round": metadata_bytes(last.torrent),
        },
        "build_seconds": round(build_s, 1),
        "loadavg_start": [round(x, 2) for x in loadavg[0]],
        "loadavg_end": [round(x, 2) for x in loadavg[1]],
        "results": results,
        "baseline_same_bytes": base,
        "goals": goals(results, base, last.transactions_bytes),
        "modes_agree_on_payer_balance": None not in at_c | at_r and len(at_c) == len(at_r) == 1,
    }
