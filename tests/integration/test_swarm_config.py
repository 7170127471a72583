"""Network safety of the session settings (protocol §8.8).

Most check what a session would be constructed with; one starts a loopback session. The pure
helpers (loopback test, infohash parsing) are tested in tests/unit without libtorrent.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from scryp.errors import LocalError, NotAvailable, TimedOut
from scryp.netmode import Mode
from scryp.swarm import Swarm, SwarmConfig, settings_for


def test_default_settings_stay_on_loopback() -> None:
    settings = settings_for(SwarmConfig(bootstrap=(("127.0.0.1", 7000), ("127.1.1.1", 7001))))
    assert settings["listen_interfaces"] == "127.0.0.1:0"
    assert settings["outgoing_interfaces"] == "127.0.0.1"
    assert settings["dht_bootstrap_nodes"] == "127.0.0.1:7000,127.1.1.1:7001"
    assert settings["enable_lsd"] is False
    assert settings["enable_upnp"] is False
    assert settings["enable_natpmp"] is False
    assert settings_for(SwarmConfig())["dht_bootstrap_nodes"] == ""  # never the default routers


@pytest.mark.parametrize(
    "config",
    [
        {"listen_host": "0.0.0.0"},
        {"listen_host": "localhost"},
        {"bootstrap": (("10.0.0.1", 6881),)},
        {"bootstrap": (("dht.example.org", 6881),)},
        {"bootstrap": (("127.example.com", 6881),)},
    ],
)
def test_leaving_loopback_needs_another_mode(config: dict[str, object]) -> None:
    with pytest.raises(LocalError, match=r"loopback|not an IP address"):
        SwarmConfig(**config)  # type: ignore[arg-type]


# libtorrent's own DHT defences: its defaults, kept in private and public mode (protocol §8.8).
PRODUCTION_DHT = {
    "dht_restrict_routing_ips": True,
    "dht_restrict_search_ips": True,
    "dht_enforce_node_id": True,
    "dht_prefer_verified_node_ids": True,
    "allow_multiple_connections_per_ip": False,
    "dht_block_ratelimit": 5,
    "dht_max_fail_count": 20,
    "dht_upload_rate_limit": 8_000,
}


def test_public_mode_is_explicit() -> None:
    """Only the settings object: public mode is never run (protocol §8.8)."""
    settings = settings_for(SwarmConfig(listen_host="0.0.0.0", network=Mode.PUBLIC))
    assert "router" in settings["dht_bootstrap_nodes"]
    assert settings["outgoing_interfaces"] == ""
    assert {key: settings[key] for key in PRODUCTION_DHT} == PRODUCTION_DHT
    assert settings["enable_lsd"] is False
    assert settings["enable_upnp"] is False and settings["enable_natpmp"] is False


def test_private_mode_is_public_minus_the_routers() -> None:
    nodes = (("10.61.0.1", 6881), ("10.61.0.2", 6881))
    private = settings_for(
        SwarmConfig(listen_host="10.61.0.5", bootstrap=nodes, network=Mode.PRIVATE)
    )
    assert private["dht_bootstrap_nodes"] == "10.61.0.1:6881,10.61.0.2:6881"  # never a router
    assert private["listen_interfaces"] == "10.61.0.5:0"
    assert private["outgoing_interfaces"] == "10.61.0.5"
    # Public's production settings, but the per-IP flood guard and the DHT's upload cap
    # (protocol §8.8.3: a private DHT of a few nodes trips both; measured in the lab).
    raised = ("dht_block_ratelimit", "dht_upload_rate_limit")
    production = {**PRODUCTION_DHT, **{key: private[key] for key in raised}}
    for key in raised:
        assert private[key] > PRODUCTION_DHT[key], key
    assert {key: private[key] for key in PRODUCTION_DHT} == production
    assert private["enable_lsd"] is False
    assert private["enable_upnp"] is False and private["enable_natpmp"] is False
    alone = settings_for(SwarmConfig(listen_host="0.0.0.0", network=Mode.PRIVATE))
    assert alone["dht_bootstrap_nodes"] == "" and alone["outgoing_interfaces"] == ""
    public = settings_for(
        SwarmConfig(listen_host="10.61.0.5", bootstrap=nodes, network=Mode.PUBLIC)
    )
    differ = {key for key in private if private[key] != public[key]}
    assert differ == {
        "outgoing_interfaces",
        "min_reconnect_time",
        "tick_interval",
        "dht_block_ratelimit",
        "dht_upload_rate_limit",
    }


def test_a_session_dials_only_what_its_mode_allows() -> None:
    assert SwarmConfig().allows("127.0.0.1") and SwarmConfig().allows("127.1.1.1")
    for host in ("10.0.0.1", "192.168.1.1", "8.8.8.8", "localhost", "::1"):
        assert not SwarmConfig().allows(host), host
    private = SwarmConfig(listen_host="0.0.0.0", network=Mode.PRIVATE)
    for host in ("10.0.0.1", "127.0.0.1", "192.168.1.1", "::1"):
        assert private.allows(host), host
    for host in ("0.0.0.0", "224.0.0.1", "255.255.255.255", "dht.example.org", "::"):
        assert not private.allows(host), host
    with pytest.raises(LocalError, match="unicast"):
        SwarmConfig(bootstrap=(("0.0.0.0", 6881),), network=Mode.PRIVATE)


def test_a_session_refuses_non_loopback_nodes_and_peers(tmp_path: Path) -> None:
    """Refused before anything is sent: the address never reaches libtorrent."""

    async def body() -> None:
        async with Swarm.start(SwarmConfig()) as swarm:
            with pytest.raises(LocalError, match="not allowed in loopback mode"):
                swarm.add_dht_node("10.0.0.1", 6881)
            with pytest.raises(LocalError, match="not allowed in loopback mode"):
                await swarm.fetch(bytes(20), tmp_path, peers=[("10.0.0.1", 6881)], timeout_s=1)
            assert swarm.infohashes() == []  # the fetch never added its torrent
            assert swarm.handler_errors == 0

    asyncio.run(body())


def test_a_missed_deadline_is_timed_out_and_a_closed_swarm_not_available(tmp_path: Path) -> None:
    """The error tree's third branch (scryp/errors.py): retry or report, nobody's bug."""

    async def body() -> Swarm:
        async with Swarm.start(SwarmConfig()) as swarm:
            with pytest.raises(TimedOut, match="torrent metadata"):
                await swarm.fetch(b"\x01" * 20, tmp_path, timeout_s=0.2)  # nobody seeds it
            assert swarm.infohashes() == []  # the failed fetch dropped its torrent
        return swarm

    async def after_close(swarm: Swarm) -> None:
        for call in (
            swarm.get_item(bytes(32)),
            swarm.put_raw(bytes(64), bytes(32), b"x"),
            swarm.fetch(b"\x01" * 20, tmp_path),
        ):
            with pytest.raises(NotAvailable, match="swarm closed") as caught:
                await call
            assert not isinstance(caught.value, TimedOut)

    async def both() -> None:
        await after_close(await body())

    asyncio.run(both())
