"""The client's tools for people who look under the hood (protocol §10.6): ``sign`` prints a
payment that ``curl`` can post, and ``pay --no-check`` sends an overspend the servers then
refuse, where plain ``pay`` refuses it before sending. A real 3-server network on 127.0.0.1."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

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
