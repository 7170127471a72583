"""The lab (issue 9): its network is isolated and leaves nothing behind, caps and partitions
work, and the small scenario runs (3 servers, a DHT node, 5 clients, one partition).

Skipped, with the reason printed, where namespaces cannot be made (not root, no ``ip netns``).
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from pathlib import Path

import pytest

from scryp.lab import inhost, kernel_limits, names, netns
from scryp.lab.lab import Lab

REASON = netns.unavailable_reason()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(REASON is not None, reason=str(REASON))]
PORT = 7000
PAYLOAD_BYTES = 1_500_000
CAP_BYTES_PER_S = 500_000


def nothing_left() -> bool:
    return netns.our_objects() == ([], []) and not netns.guard_route_present()


def test_the_lab_leaves_nothing_behind_even_when_the_scenario_raises(tmp_path: Path) -> None:
    # A crashed run's leftovers (a namespace and a link with the prefix) go at the next start.
    subprocess.run(["ip", "netns", "add", names.host_name(77)], check=True)
    subprocess.run(
        ["ip", "link", "add", names.veth_name(77), "type", "veth", "peer", "name", "scryplab-x77"],
        check=True,
    )
    machine = kernel_limits.read()
    hosts = 40  # enough that the backlog must grow (40 x 50 > the kernel's 1,000)
    with pytest.raises(RuntimeError, match="the scenario failed"), Lab(tmp_path, hosts) as lab:
        assert netns.our_objects()[0] == sorted(names.host_name(i) for i in range(hosts))
        raised = kernel_limits.read()
        assert raised == {k: max(v, kernel_limits.wanted(hosts)[k]) for k, v in machine.items()}
        assert raised[str(kernel_limits.BACKLOG)] >= hosts * kernel_limits.BACKLOG_PER_HOST
        lab.start("sleeper", 1, ["sleep", "600"])
        (tmp_path / "clients" / "client-1").mkdir(parents=True)
        (tmp_path / "clients" / "client-1" / "balances").write_bytes(b"x" * 1000)
        raise RuntimeError("the scenario failed")
    assert nothing_left()
    assert kernel_limits.read() == machine  # the machine's own values are back
    assert not lab.processes[0].running
    # The hosts' data goes with the network (issue 9: a crowd leaves ~1.8 GB); the logs stay.
    assert not (tmp_path / "clients").exists()
    assert lab.log_path("sleeper").exists()


async def _serve(host: int, seconds: float) -> tuple[int, float]:
    """Accept one connection on ``host``: (bytes it sent, seconds from first byte to end)."""
    received = 0
    first = 0.0
    done = asyncio.Event()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal received, first
        while chunk := await reader.read(65536):
            first = first or time.monotonic()
            received += len(chunk)
        writer.close()
        done.set()

    server = await asyncio.start_server(on_client, names.host_address(host), PORT)
    async with server:
        await asyncio.wait_for(done.wait(), seconds)
    return received, time.monotonic() - first


async def _send(host: int, to: int, payload: int) -> float:
    started = time.monotonic()
    _, writer = await asyncio.wait_for(asyncio.open_connection(names.host_address(to), PORT), 3)
    writer.write(b"x" * payload)
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    return time.monotonic() - started


def test_hosts_reach_each_other_only_and_caps_and_cuts_work(tmp_path: Path) -> None:
    with Lab(tmp_path, 3) as lab:

        def transfer(payload: int) -> tuple[int, float]:
            """(bytes host 2 received from host 1, seconds it took at the receiver)"""
            server = inhost.run_on_host(names.host_name(2), lambda: _serve(2, 30))
            time.sleep(0.3)  # the listener binds in its own thread (no event crosses threads)
            seconds = inhost.run_on_host(names.host_name(1), lambda: _send(1, 2, payload))
            seconds.result(35)
            return server.result(35)

        assert transfer(100_000)[0] == 100_000
        lab.cap_upload(1, CAP_BYTES_PER_S)
        received, seconds = transfer(PAYLOAD_BYTES)
        assert received == PAYLOAD_BYTES
        # tbf: the payload less one burst takes at least its time at the capped rate
        # (measured at the receiver: the sender's clock stops when its kernel buffer takes it).
        assert seconds >= 0.9 * (PAYLOAD_BYTES - names.TBF_BURST_BYTES) / CAP_BYTES_PER_S

        async def no_route() -> None:
            with socket.socket() as probe:
                probe.settimeout(1)
                probe.connect(("192.0.2.1", 80))  # documentation range: never reached

        with pytest.raises(OSError, match="unreachable"):
            inhost.run_on_host(names.host_name(1), no_route).result(5)
        lab.cut(2)
        with pytest.raises((OSError, TimeoutError)):
            inhost.run_on_host(names.host_name(1), lambda: _send(1, 2, 10)).result(10)
        lab.heal(2)
        assert transfer(1000)[0] == 1000
    assert nothing_left()


def test_the_small_scenario(tmp_path: Path) -> None:
    """3 servers, a DHT node, 5 clients, one partition of the leader, all in private mode on
    their own hosts: a fresh client pays and reads its verified balance, four light clients
    read one, rounds resume on the majority side and everyone agrees after the heal."""
    from scryp.lab import scenarios, testbed

    with Lab(tmp_path, testbed.Plan(3, clients=5).hosts) as lab:
        outcome = asyncio.run(asyncio.wait_for(scenarios.small(lab), 300))
    assert nothing_left()
    assert not (tmp_path / "data").exists() and not (tmp_path / "clients").exists()
    results = outcome.results
    assert results["fresh_client"]["balance"] == 7  # checked against the paid amount too
    assert results["after_heal"]["balance"] == 3
    assert results["light"]["failure_count"] == 0 and results["light"]["light"]["count"] == 4
    partition = results["partition"]
    assert partition["resume_s"] is not None  # the majority certified a round while cut
    # Everyone agrees at or after the round the majority certified while the leader was cut
    # (at that very round when the old leader catches up before the next one is certified).
    assert (
        partition["agreed_round"] >= partition["certified_at_heal"] > partition["certified_before"]
    )
