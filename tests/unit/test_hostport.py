"""HOST:PORT parsing (scryp/hostport.py) and whose fault a bad address is (protocol §8.3)."""

from __future__ import annotations

import argparse

import pytest

from scryp.client.network import api_url, parse_hostport
from scryp.errors import ConfigError
from scryp.hostport import LOOPBACK, hostport_arg, is_loopback, split_hostport


def test_split_hostport_accepts_host_and_port() -> None:
    assert split_hostport("127.0.0.1:6882") == ("127.0.0.1", 6882)
    assert split_hostport("localhost:1") == ("localhost", 1)
    assert split_hostport("[::1]:65535") == ("[::1]", 65535)


@pytest.mark.parametrize(
    "text", ["", "6882", ":6882", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "h:x", "h:-1"]
)
def test_malformed_addresses_raise_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        split_hostport(text)
    with pytest.raises(argparse.ArgumentTypeError, match="HOST:PORT"):
        hostport_arg(text)  # on a command line: a usage error
    with pytest.raises(ConfigError, match="HOST:PORT"):
        parse_hostport(text)  # in a file or option the user gave: a configuration error


def test_a_pointers_unusable_api_is_a_value_error_not_a_local_one() -> None:
    """A server's pointer with a malformed ``api`` is skipped by the client (sync.py), not
    reported as the user's configuration error that stops the command."""
    assert api_url("127.0.0.1:6882") == api_url("http://127.0.0.1:6882/") == "http://127.0.0.1:6882"
    with pytest.raises(ValueError) as raised:
        api_url("no-port-here")
    assert not isinstance(raised.value, ConfigError)


def test_is_loopback() -> None:
    assert is_loopback(LOOPBACK) and is_loopback("127.0.0.1") and is_loopback("127.1.1.1")
    # IPv6 loopback and names are refused: a name could resolve anywhere (protocol §8.8).
    for host in ("128.0.0.1", "::1", "x", "localhost", "127.example.com", "0.0.0.0", ""):
        assert not is_loopback(host), host
