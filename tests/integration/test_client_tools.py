"""The client's tools for people who look under the hood (protocol §10.6): ``sign`` prints a
payment that ``curl`` can post, and ``pay --no-check`` sends an overspend the servers then
refuse, where plain ``pay`` refuses it before sending. A real 3-server network on 127.0.0.1."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from scryp.core.buckets import state_root
from scryp.localnet import LocalNetwork

from .test_client_e2e import cli, faucet_seed, key, net, seed_file

__all__ = ["net"]  # the module-scoped network fixture, shared with the e2e tests' definition


def test_a_signed_payment_posted_as_hex_is_accepted(net: LocalNetwork, tmp_path: Path) -> None:
    ivan = key("ivan")
    code, signed, err = cli(net, tmp_path, "sign", ivan.account_id, "77", "--key", faucet_seed(net))
    assert code == 0, err
    assert len(signed["transaction"]) == 280

    async def post() -> tuple[int, dict[str, object]]:
        url = net.server_processes[0].api + "/transact"
        headers = {"Content-Type": "text/plain"}
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=signed["transaction"], headers=headers) as response,
        ):
            return response.status, await response.json()

    status, body = asyncio.run(post())
    assert status == 202 and body["results"] == [{"id": signed["id"], "status": "pending"}]


def test_an_overspend_is_refused_before_sending_or_by_the_servers(
    net: LocalNetwork, tmp_path: Path
) -> None:
    judy, mallory = key("judy"), key("mallory")
    code, _, err = cli(net, tmp_path, "pay", judy.account_id, "10", "--key", faucet_seed(net))
    assert code == 0, err
    mine = seed_file(tmp_path, judy)
    code, refused, _ = cli(net, tmp_path, "pay", mallory.account_id, "11", "--key", mine)
    assert code == 2 and "nothing was sent" in refused["error"]
    code, sent, _ = cli(
        net, tmp_path / "raw", "pay", mallory.account_id, "11", "--key", mine, "--no-check"
    )
    assert code == 1 and sent["status"] == "rejected"
    assert sent["reason"] == "insufficient funds"


async def published(net: LocalNetwork, server: int, round_number: int) -> dict[str, Any] | None:
    """What ``server`` itself says of ``round_number`` (GET /rounds), if it still holds it."""
    code, body = await net.get(server, f"/rounds?from={round_number}")
    rounds = body.get("rounds", []) if code == 200 and isinstance(body, dict) else []
    return next((r for r in rounds if r["round"] == round_number), None)


def test_status_shows_each_servers_infohash_ready_for_the_downloader(
    net: LocalNetwork, tmp_path: Path
) -> None:
    code, status, err = cli(net, tmp_path, "status")
    assert code == 0, err
    assert len(status["pointers"]) == 3
    for pointer in status["pointers"]:
        assert pointer["round"] is not None, pointer
        served = asyncio.run(published(net, pointer["index"], pointer["round"]))
        assert served is not None, f"server {pointer['index']} forgot round {pointer['round']}"
        assert pointer["infohash"] == served["infohash"]  # v1, as the server seeds it
        assert pointer["state_root"] == served["state_root"]
    # Pasted into the downloader, the certified round's infohash fetches that round: its
    # balances file gives the certified state root (protocol §4.4.3).
    argv = [sys.executable, "-m", "scryp.client", status["infohash"], "--out", str(tmp_path)]
    argv += [arg for b in status["bootstrap"] for arg in ("--bootstrap", b)]
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    paths = {Path(path).name: Path(path) for _, path in map(str.split, done.stdout.splitlines())}
    if "balances" in paths:  # a checkpoint round (protocol §4.4.4)
        assert state_root(paths["balances"].read_bytes()).hex() == status["state_root"]
    else:  # a round of changes: which accounts the round changed, nothing more
        assert set(paths) == {"changes", "transactions", "remembered"}, paths

    status_argv = ["status", "--testnet", str(net.root), "--data", str(tmp_path / "text")]
    text = subprocess.run(
        [sys.executable, "-m", "scryp.client", *status_argv],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert re.search(r"^    infohash [0-9a-f]{40}  state [0-9a-f]{64}$", text, re.MULTILINE)
    assert re.search(r"^download: python -m scryp.client [0-9a-f]{40} --bootstrap ", text, re.M)


def test_servers_log_the_other_servers_pointers(net: LocalNetwork) -> None:
    """Each server logs every other server's pointer (round, v1 infohash, state) the first
    time it sees it, then once a minute (protocol §9.12)."""
    log_file = net.root / "logs" / "server-0.log"
    line = re.compile(
        r"pointer of server (\d): round (\d+) infohash ([0-9a-f]{40}) state ([0-9a-f]{64})"
    )

    async def logged_both() -> bool:
        seen = {m.group(1) for m in line.finditer(log_file.read_text())}
        return {"1", "2"} <= seen

    asyncio.run(net.wait_until(logged_both, 30.0, "server 0 logging servers 1 and 2's pointers"))
    newest: dict[int, re.Match[str]] = {}
    for match in line.finditer(log_file.read_text()):
        newest[int(match.group(1))] = match
    checked = 0
    for server, match in newest.items():
        served = asyncio.run(published(net, server, int(match.group(2))))
        if served is not None:  # logged rounds may be older than what servers keep
            assert (served["infohash"], served["state_root"]) == match.group(3, 4)
            checked += 1
    assert checked > 0
