"""Network modes: the one parser of ``--network loopback|private|public``, ``--bootstrap
HOST:PORT`` and ``--listen ADDR`` for every entry point, and the rules of which addresses each
mode may listen on, dial, bootstrap from and advertise (protocol §8.8, §9.6).

- ``loopback`` (the default): everything on 127.0.0.0/8, libtorrent's settings for many nodes
  sharing one address (today's development mode and every test's).
- ``private``: any unicast IP address (127.0.0.0/8 included, for one machine), bootstrapped
  only from the nodes given (or the DHT node cache, ``DHT_STATE_FILE``), with libtorrent's
  production DHT settings: an organisation's own network, and the lab's.
- ``public``: the Mainline DHT and its routers. No test or default run uses it.

Invariants: in loopback mode no address outside 127.0.0.0/8 is ever accepted; outside public
mode a host name is never accepted (resolving it is already traffic, and it could resolve
anywhere); nothing advertises an unspecified address, nor a loopback one outside loopback mode.
A contradiction is a ``ConfigError`` whose message is one line; entry points print it and exit
with status 2 (``fail``).
"""

from __future__ import annotations

import argparse
import enum
import ipaddress
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from scryp.errors import ConfigError
from scryp.hostport import LOOPBACK, split_hostport

# The DHT node cache in a data directory (the original's ``.boot``): libtorrent's saved DHT
# state, loaded at the next start so a restart rejoins with no bootstrap node reachable.
DHT_STATE_FILE = "dht.state"
EXIT_USAGE = 2
ANY_IPV4 = "0.0.0.0"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Mode(enum.StrEnum):
    LOOPBACK = "loopback"
    PRIVATE = "private"
    PUBLIC = "public"


MODES = tuple(mode.value for mode in Mode)


def _ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _is_unicast(address: IPAddress) -> bool:
    broadcast = address == ipaddress.IPv4Address("255.255.255.255")
    return not (address.is_unspecified or address.is_multicast or broadcast)


def host_allowed(mode: Mode, host: str) -> bool:
    """Whether a session of ``mode`` may dial ``host``, bootstrap from it, or take it from a
    pointer or a cache file (protocol §8.8)."""
    address = _ip(host)
    if address is None:
        return mode is Mode.PUBLIC
    if mode is Mode.LOOPBACK:
        return address.version == 4 and address.is_loopback
    return _is_unicast(address)


def listen_problem(mode: Mode, host: str) -> str | None:
    """Why a session of ``mode`` may not listen on ``host``, or None."""
    address = _ip(host)
    if address is None:
        return f"--listen {host} is not an IP address"
    if mode is Mode.LOOPBACK:
        if address.version == 4 and address.is_loopback:
            return None
        return (
            f"--listen {host} is not a loopback address: --network loopback (the default) "
            "stays on 127.0.0.0/8; give --network private to leave it"
        )
    if address.is_multicast or address == ipaddress.IPv4Address("255.255.255.255"):
        return f"--listen {host} is not a unicast address"
    return None


def unspecified(host: str) -> bool:
    """Whether ``host`` is the "any" address (0.0.0.0, ::) or empty: bindable, not dialable."""
    address = _ip(host)
    return host == "" or (address is not None and address.is_unspecified)


def advertise_problem(mode: Mode, host: str) -> str | None:
    """Why a server of ``mode`` may not tell peers and clients to reach it at ``host``."""
    address = _ip(host)
    if address is not None and address.is_unspecified:
        return (
            f"the advertised address {host} is unspecified (it means 'any', nobody can dial "
            "it): give --advertise IP, the address peers and clients reach this server at"
        )
    if mode is not Mode.LOOPBACK and address is not None and address.is_loopback:
        return (
            f"the advertised address {host} is a loopback address, which other machines cannot "
            f"reach in --network {mode}: give --advertise IP"
        )
    if not host_allowed(mode, host):
        return f"the advertised address {host} is not allowed in --network {mode}"
    return None


def _hostport(text: str, flag: str) -> tuple[str, int]:
    try:
        host, port = split_hostport(text)
    except ValueError as error:
        raise ConfigError(f"{flag}: {error}") from None
    if host.startswith("[") and host.endswith("]"):  # an IPv6 address, [::1]:6881
        host = host[1:-1]
    return host, port


def check_address(mode: Mode, host: str, port: int, flag: str) -> None:
    """A ``ConfigError`` (one line) if ``mode`` may not reach ``host``; ``flag`` names where
    the address came from (``--bootstrap``, or ``--peer 1=``)."""
    if host_allowed(mode, host):
        return
    given = f"{flag}{'' if flag.endswith('=') else ' '}{host}:{port}"
    if mode is Mode.LOOPBACK:
        raise ConfigError(
            f"{given} is not a loopback address: --network loopback (the default) "
            "stays on 127.0.0.0/8; give --network private to leave it"
        )
    if _ip(host) is None:
        raise ConfigError(f"{given}: give an IP address (--network {mode})")
    raise ConfigError(f"{given} is not a unicast address")


@dataclass(frozen=True, slots=True)
class NetMode:
    """What ``--network``, ``--bootstrap`` and ``--listen`` said, checked."""

    mode: Mode = Mode.LOOPBACK
    bootstrap: tuple[tuple[str, int], ...] = ()
    listen: str = LOOPBACK

    def allows(self, host: str) -> bool:
        return host_allowed(self.mode, host)


def default_listen(mode: Mode) -> str:
    return LOOPBACK if mode is Mode.LOOPBACK else ANY_IPV4


def add_arguments(parser: argparse.ArgumentParser, *, listen: bool = False) -> None:
    """``--network``, ``--bootstrap`` (repeatable) and, with ``listen``, ``--listen``
    (``--host`` is its old name)."""
    group = parser.add_argument_group("network (protocol §8.8)")
    group.add_argument(
        "--network",
        choices=MODES,
        default=None,
        help="loopback (default): 127.0.0.0/8 only; private: any unicast address, "
        "bootstrapped only from --bootstrap nodes; public: the Mainline DHT",
    )
    group.add_argument(
        "--bootstrap",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="a DHT node to join (repeatable)",
    )
    # Deprecated: the old name of --network public (README, "Running across machines").
    group.add_argument("--public-dht", action="store_true", help=argparse.SUPPRESS)
    if listen:
        group.add_argument(
            "--listen",
            "--host",
            dest="listen",
            default=None,
            metavar="ADDR",
            help="the address to bind (default: 127.0.0.1 in loopback mode, else 0.0.0.0)",
        )


def from_args(
    args: argparse.Namespace, *, needs_bootstrap: bool = False, data_dir: Path | None = None
) -> NetMode:
    """The checked mode; ``ConfigError`` (one line) on a contradiction or an unusable
    address. ``needs_bootstrap``: in private mode, a DHT node must be given unless
    ``data_dir`` holds a DHT node cache."""
    mode = _mode(args)
    nodes = tuple(_hostport(text, "--bootstrap") for text in args.bootstrap)
    for host, port in nodes:
        check_address(mode, host, port, "--bootstrap")
    listen = getattr(args, "listen", None) or default_listen(mode)
    problem = listen_problem(mode, listen)
    if problem:
        raise ConfigError(problem)
    cached = data_dir is not None and has_dht_state(data_dir)
    if needs_bootstrap and mode is Mode.PRIVATE and not nodes and not cached:
        where = f" and no DHT node cache in {data_dir}" if data_dir is not None else ""
        raise ConfigError(
            f"--network private needs --bootstrap HOST:PORT (a DHT node to join){where}"
        )
    return NetMode(mode, nodes, listen)


def _mode(args: argparse.Namespace) -> Mode:
    given = Mode(args.network) if args.network else None
    if getattr(args, "public_dht", False):
        if given not in (None, Mode.PUBLIC):
            raise ConfigError(f"--public-dht contradicts --network {given}")
        print("warning: --public-dht is deprecated: say --network public", file=sys.stderr)
        return Mode.PUBLIC
    return given or Mode.LOOPBACK


def has_dht_state(data_dir: Path) -> bool:
    path = data_dir / DHT_STATE_FILE
    return path.is_file() and path.stat().st_size > 0


def fail(prog: str, message: str) -> NoReturn:
    """One line on stderr and exit status 2: a usage or configuration problem."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


def parse_or_exit(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    *,
    needs_bootstrap: bool = False,
    data_dir: Path | None = None,
) -> NetMode:
    """``from_args`` for an entry point: a problem is one line and exit status 2."""
    try:
        return from_args(args, needs_bootstrap=needs_bootstrap, data_dir=data_dir)
    except ConfigError as error:
        fail(parser.prog, str(error))
