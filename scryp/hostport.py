"""Addresses: the one ``HOST:PORT`` parser for the addresses given on command lines, written
in files, and carried in pointers (protocol §8.3, §9.6), and the loopback test that keeps every
default run on 127.0.0.0/8 (protocol §8.8).

A malformed address raises ValueError; each caller says whose fault it is (a usage error,
a bad file, or a peer's bad record).
"""

from __future__ import annotations

import argparse
import ipaddress

PORT_MAX = 65_535
# Where everything listens in loopback mode, the default (scryp.netmode; protocol §8.8).
LOOPBACK = "127.0.0.1"


def split_hostport(text: str) -> tuple[str, int]:
    """(host, port) from ``HOST:PORT``, the port in 1..65535; ValueError otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= PORT_MAX:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def hostport_arg(text: str) -> tuple[str, int]:
    """``split_hostport`` as an argparse ``type``: a malformed address is a usage error."""
    try:
        return split_hostport(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def is_loopback(host: str) -> bool:
    """Whether ``host`` is an IPv4 address in 127.0.0.0/8 (a name never is: it could resolve
    anywhere, and resolving it is already traffic)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.version == 4 and address.is_loopback
