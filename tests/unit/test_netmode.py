"""The network modes' flags and address rules (scryp/netmode.py; protocol §8.8, §9.6)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from scryp import netmode
from scryp.errors import ConfigError
from scryp.netmode import Mode, advertise_problem, from_args, host_allowed


def parse(*argv: str, listen: bool = True) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    netmode.add_arguments(parser, listen=listen)
    return parser.parse_args(argv)


def test_loopback_is_the_default_and_stays_on_127() -> None:
    mode = from_args(parse("--bootstrap", "127.0.0.1:6881", "--bootstrap", "127.1.1.1:7"))
    assert mode.mode is Mode.LOOPBACK and mode.listen == "127.0.0.1"
    assert mode.bootstrap == (("127.0.0.1", 6881), ("127.1.1.1", 7))
    for host in ("10.0.0.1", "8.8.8.8", "localhost", "::1", "0.0.0.0"):
        assert not host_allowed(Mode.LOOPBACK, host), host


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--bootstrap", "10.0.0.1:6881"], "not a loopback address"),
        (["--network", "loopback", "--listen", "10.0.0.1"], "not a loopback address"),
        (["--listen", "0.0.0.0"], "not a loopback address"),
        (["--bootstrap", "127.0.0.1"], "expected HOST:PORT"),
        (["--network", "private", "--bootstrap", "dht.example.org:6881"], "give an IP address"),
        (["--network", "private", "--bootstrap", "224.0.0.1:6881"], "not a unicast address"),
        (["--network", "private", "--bootstrap", "0.0.0.0:6881"], "not a unicast address"),
        (["--network", "private", "--listen", "localhost"], "not an IP address"),
        (["--network", "private"], "needs --bootstrap"),
        (["--network", "loopback", "--public-dht"], "contradicts"),
    ],
)
def test_contradictions_are_one_line(argv: list[str], says: str) -> None:
    with pytest.raises(ConfigError, match=says) as caught:
        from_args(parse(*argv), needs_bootstrap=True)
    assert "\n" not in str(caught.value)


def test_private_mode_takes_any_unicast_address_and_binds_any_by_default() -> None:
    args = parse("--network", "private", "--bootstrap", "10.61.0.1:6881", "--bootstrap", "[::1]:1")
    mode = from_args(args, needs_bootstrap=True)
    assert mode.mode is Mode.PRIVATE and mode.listen == "0.0.0.0"
    assert mode.bootstrap == (("10.61.0.1", 6881), ("::1", 1))
    for host in ("10.61.0.7", "192.168.1.1", "127.0.0.1", "::1"):
        assert host_allowed(Mode.PRIVATE, host), host
    listen = from_args(parse("--network", "private", "--host", "10.61.0.2"))  # the old name
    assert listen.listen == "10.61.0.2"


def test_private_mode_without_bootstrap_needs_a_node_cache(tmp_path: Path) -> None:
    args = parse("--network", "private")
    with pytest.raises(ConfigError, match=f"no DHT node cache in {tmp_path}"):
        from_args(args, needs_bootstrap=True, data_dir=tmp_path)
    (tmp_path / netmode.DHT_STATE_FILE).write_bytes(b"d9:dht stateded")
    assert from_args(args, needs_bootstrap=True, data_dir=tmp_path).bootstrap == ()
    assert from_args(args).mode is Mode.PRIVATE  # the first node of a DHT needs none


def test_public_dht_is_a_deprecated_name_of_public(capsys: pytest.CaptureFixture[str]) -> None:
    """The settings only: public mode is never run."""
    assert from_args(parse("--public-dht")).mode is Mode.PUBLIC
    assert "deprecated" in capsys.readouterr().err
    assert host_allowed(Mode.PUBLIC, "dht.example.org")  # a host name: public mode only


def test_never_advertise_unspecified_nor_loopback_outside_loopback() -> None:
    for mode in Mode:
        for host in ("0.0.0.0", "::"):
            assert advertise_problem(mode, host) is not None
    assert advertise_problem(Mode.LOOPBACK, "127.0.0.1") is None
    assert advertise_problem(Mode.LOOPBACK, "10.61.0.2") is not None
    assert advertise_problem(Mode.PRIVATE, "127.0.0.1") is not None
    assert advertise_problem(Mode.PRIVATE, "::1") is not None
    assert advertise_problem(Mode.PRIVATE, "10.61.0.2") is None
    assert advertise_problem(Mode.PRIVATE, "scryp.example.org") is not None
