"""History from the genesis through an archival seeder (issue 13; protocol §10.8).

A real network (3 server processes keeping only a few seconds of rounds, a DHT node, one
archive process, ``scryp.localnet``); the faucet pays an account; once no server lists that
round any more, a fresh client's ``history`` and the wallet page in headless Chromium still
start at the genesis and show the payment, every round checked against its certificate.
Then an archive that lies (a real aiohttp server in front of the real archive, changing one
round) is refused: a round listed as empty when it was not, and a forged certificate.
"""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from scryp.crypto import KeyPair
from scryp.keyfile import write_seed
from scryp.localnet import LocalNetwork
from tests.integration.test_client_e2e import (
    CHROMEDRIVER,
    CHROMIUM,
    browser_options,
    cli,
    faucet_seed,
)

pytestmark = pytest.mark.slow

ROUND_S = 0.5
DEADLINE_S = 90.0
AMOUNT = 777


def key(name: str) -> KeyPair:
    return KeyPair.from_seed(hashlib.sha256(b"archive test " + name.encode()).digest())


@pytest.fixture(scope="module")
def paid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalNetwork, int]]:
    """A network where the faucet paid ``key("alice")`` in a round no server lists any more;
    (the network, that round)."""
    root = tmp_path_factory.mktemp("net")
    net = LocalNetwork(
        root,
        servers=3,
        round_interval_s=ROUND_S,
        archives=1,
        archive_args=["--checkpoint-every", "10"],
        # Servers keep ~8 s of rounds, so the payment's round leaves them within seconds (and
        # the archive, polling every 0.5 s, has slack on a loaded machine).
        # Servers' checkpoint rounds every 10 rounds (their torrents hold balances, protocol
        # §4.4.4): the archive's checkpoints are those.
        server_args=[
            *("--rounds-kept", "2", "--rounds-kept-s", "8", "--compaction-lag", "2"),
            *("--checkpoint-every", "10"),
        ],
    )
    try:
        asyncio.run(net.start())
        code, result, err = cli(
            net,
            root / "payer",
            "pay",
            key("alice").account_id,
            str(AMOUNT),
            "--key",
            faucet_seed(net),
        )
        assert code == 0 and result["status"] == "accepted", err
        round_paid = int(result["round"])

        async def servers_forgot() -> bool:
            for index in range(net.servers):
                code, body = await net.get(index, f"/rounds?from={round_paid}")
                rounds = [e["round"] for e in body["rounds"]] if code == 200 else [round_paid]
                if not rounds or min(rounds) <= round_paid:
                    return False
            return True

        asyncio.run(net.wait_until(servers_forgot, DEADLINE_S, "servers dropping the round"))
        code, status = asyncio.run(archive_status(net))
        assert code == 200 and status["gaps"] == [], status  # it kept up with the servers
        code, archived = asyncio.run(archive_get(net, "/rounds?from=0"))
        checkpoints = [e["round"] for e in archived["rounds"] if e["checkpoint"]]
        assert checkpoints[0] == 0 and all(n % 10 == 0 for n in checkpoints), checkpoints
        yield net, round_paid
    finally:
        asyncio.run(net.stop())


async def archive_status(net: LocalNetwork) -> tuple[int, Any]:
    return await archive_get(net, "/status")


async def archive_get(net: LocalNetwork, path: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(net.archive_apis[0] + path) as response,
    ):
        return response.status, await response.json()


def test_cli_history_starts_at_the_genesis(paid: tuple[LocalNetwork, int], tmp_path: Path) -> None:
    net, round_paid = paid
    code, history, err = cli(net, tmp_path, "history", key("alice").account_id)
    assert code == 0, err
    assert history["archive_error"] is None, history["archive_error"]
    assert history["from_round"] == 0
    assert history["round"] > round_paid  # its first sync came after the payment
    assert [(p["direction"], p["amount"], p["round"]) for p in history["payments"]] == [
        ("in", AMOUNT, round_paid)
    ]
    assert history["balance"] == AMOUNT
    # Every server has dropped the round: only the archive could have given it.
    code, listing = asyncio.run(net.get(0, "/rounds?from=0"))
    assert round_paid not in [e["round"] for e in listing["rounds"]]


def liar(changes: Callable[[dict[str, Any]], None], round_number: int, real: str) -> Any:
    """An archive API that serves the real archive's listing with ``round_number`` changed."""

    async def rounds(request: web.Request) -> web.Response:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{real}/rounds", params=request.query) as response,
        ):
            body = await response.json()
        for entry in body["rounds"]:
            if entry["round"] == round_number:
                changes(entry)
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/rounds", rounds)
    return app


def empty(entry: dict[str, Any]) -> None:
    entry["transactions"] = 0  # "nothing happened in this round"


def forged_certificate(entry: dict[str, Any]) -> None:
    certificate = bytearray.fromhex(entry["certificate"])
    certificate[-1] ^= 1  # one bit of the last signature
    entry["certificate"] = certificate.hex()
    entry["transactions"] = 0


@pytest.mark.parametrize(
    ("change", "reason"),
    [(empty, "do not give the certified state root"), (forged_certificate, "does not verify")],
)
def test_a_lying_archive_is_refused(
    paid: tuple[LocalNetwork, int],
    tmp_path: Path,
    change: Callable[[dict[str, Any]], None],
    reason: str,
) -> None:
    net, round_paid = paid

    async def scenario() -> tuple[int, dict[str, Any], str]:
        runner = web.AppRunner(liar(change, round_paid, net.archive_apis[0]))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:  # the liar is asked first (--archive before testnet.json's)
            return await asyncio.to_thread(
                cli, net, tmp_path, "history", key("alice").account_id, "--archive", url
            )
        finally:
            await runner.cleanup()

    code, history, err = asyncio.run(scenario())
    assert code == 0, err  # the synced history is still shown, and why it is not older
    assert f"archive round {round_paid} refused" in history["archive_error"]
    assert reason in history["archive_error"]
    assert history["from_round"] > round_paid and history["payments"] == []


def test_wallet_page_shows_the_faucet_payment(
    paid: tuple[LocalNetwork, int], tmp_path: Path
) -> None:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("tools/setup installs chromium and chromedriver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    net, round_paid = paid
    seed = tmp_path / "alice.seed"
    write_seed(seed, key("alice").seed)
    argv = [sys.executable, "-m", "scryp.client", "ui", "--port", "0", "--key", str(seed)]
    argv += ["--testnet", str(net.root), "--data", str(tmp_path / "ui")]
    log = tmp_path / "ui.log"
    with log.open("wb") as errors:
        ui = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, text=True)
    driver = None
    try:
        assert ui.stdout is not None
        line = ui.stdout.readline()
        assert line.startswith("wallet on http://127.0.0.1:"), line + log.read_text()
        driver = webdriver.Chrome(
            service=Service(str(CHROMEDRIVER)), options=browser_options(tmp_path / "chromium")
        )
        wait = WebDriverWait(driver, DEADLINE_S)
        driver.get(line.split()[-1])
        # The page re-renders every second: read its texts in one script, never stale.
        read = (
            "return [document.getElementById('since').textContent,"
            " document.getElementById('balance').textContent,"
            " Array.from(document.querySelectorAll('#payments li.payment'))"
            ".map(li => li.textContent)];"
        )
        wait.until(lambda d: d.execute_script(read)[0].startswith("since the genesis"))
        since, balance, items = driver.execute_script(read)
        assert since == "since the genesis, verified"
        assert balance == f"{AMOUNT} scryp"
        assert len(items) == 1, items
        assert f"+{AMOUNT}" in items[0] and f"round {round_paid}" in items[0]
    finally:
        if driver is not None:
            driver.quit()
        ui.terminate()
        ui.wait(timeout=10)
        if ui.stdout is not None:
            ui.stdout.close()
