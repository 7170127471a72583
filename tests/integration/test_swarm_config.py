"""Network safety of the session settings (protocol §8.8).

No session is started here: these check what a session would be constructed with. The pure
helpers (loopback test, infohash parsing) are tested in tests/unit without libtorrent.
"""

from __future__ import annotations

import pytest

from scryp.errors import LocalError
from scryp.swarm import SwarmConfig, settings_for


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
def test_leaving_loopback_needs_public_dht(config: dict[str, object]) -> None:
    with pytest.raises(LocalError, match="loopback"):
        SwarmConfig(**config)  # type: ignore[arg-type]


def test_public_mode_is_explicit() -> None:
    settings = settings_for(SwarmConfig(listen_host="0.0.0.0", public_dht=True))
    assert "router" in settings["dht_bootstrap_nodes"]
    assert settings["dht_restrict_routing_ips"] is True
    assert settings["enable_lsd"] is False
