"""The lab's names and addresses, and the ``ip``/``tc`` command lines that make and unmake
its hosts (issue 9). Pure: nothing here runs a command.

Owns: the prefix every object the lab makes carries (network namespaces ``scryplab-hN``, the
bridge ``scryplab-br``, the root-side veth ends ``scryplab-vN``), the address plan
(10.61.0.0/16, one /24 per host for the first 250; host 0 is 10.61.0.1, the DHT node of the
issue's command lines), and the commands. Invariants (network safety, issue 9): the bridge
has no address and is never given
a port that is not one of our veths; a host gets one address on its ``eth0`` and the route
that address implies, never a default route; nothing here names a real interface, enables
forwarding or NAT; the root namespace gets only an unreachable route for the lab's subnet
(``guard_route_commands``), so no lab address is ever reached through the default route.
Interface names stay within Linux's 15 characters.
"""

from __future__ import annotations

import ipaddress

PREFIX = "scryplab-"
BRIDGE = PREFIX + "br"
HOST_PREFIX = PREFIX + "h"
VETH_PREFIX = PREFIX + "v"
HOST_IFACE = "eth0"  # the host's end of its veth, inside its namespace only
SUBNET = ipaddress.IPv4Network("10.61.0.0/16")
ADDRESSES_PER_BLOCK = 254  # .1 .. .254 of each 10.61.X.0/24
BLOCKS = 250  # 10.61.0.0/24 .. 10.61.249.0/24
HOSTS_MAX = BLOCKS * ADDRESSES_PER_BLOCK  # the address plan's room
# A Linux bridge has at most 1,024 ports (BR_MAX_PORTS; "RTNETLINK answers: Exchange full"
# past it), and every host is one port: the most hosts one lab can make.
BRIDGE_PORTS_MAX = 1024
IFNAME_CHARS_MAX = 15  # IFNAMSIZ - 1
# tc tbf: a burst of 64 KiB lets a 10 MB/s cap pass whole 16 KiB pieces, and 100 ms of
# queue is what a home router's buffer holds.
TBF_BURST_BYTES = 64 * 1024
TBF_LATENCY_MS = 100


def host_name(index: int) -> str:
    """The network namespace of host ``index``."""
    _check_index(index)
    return f"{HOST_PREFIX}{index}"


def veth_name(index: int) -> str:
    """The root side of host ``index``'s veth pair (a port of the bridge)."""
    _check_index(index)
    name = f"{VETH_PREFIX}{index}"
    assert len(name) <= IFNAME_CHARS_MAX, name
    return name


def host_address(index: int) -> str:
    """Host ``index``'s address: 10.61.(index % 250).(index // 250 + 1), so hosts 0..249 are
    each in a /24 of their own, as machines on the internet are: libtorrent's production DHT
    settings (private mode) query one node per /24 in a lookup and keep one per /24 in a
    routing-table bucket, and with every host in one /24 most fresh clients found no pointer
    (docs/BENCHMARKS.md, lab)."""
    _check_index(index)
    offset, block = divmod(index, BLOCKS)
    return str(SUBNET.network_address + block * 256 + offset + 1)


def is_ours(name: str) -> bool:
    """Whether a namespace or link name is one the lab made (and so may remove)."""
    return name.startswith(PREFIX) and len(name) > len(PREFIX)


def _check_index(index: int) -> None:
    if not 0 <= index < HOSTS_MAX:
        raise ValueError(f"host index {index} outside 0..{HOSTS_MAX - 1}")


# -- command lines (for ``ip -batch -`` unless said otherwise) --------------------------------


def bridge_commands() -> list[str]:
    """The bridge: up, no address, no IPv6 link-local address either (``addrgenmode none``),
    so the machine's own namespace has no foot on the lab's network."""
    return [
        f"link add {BRIDGE} type bridge",
        f"link set {BRIDGE} addrgenmode none",
        f"link set {BRIDGE} up",
    ]


def guard_route_commands(add: bool) -> list[str]:
    """In the root namespace: 10.61.0.0/16 unreachable, so that nothing in the machine's own
    namespace (the lab's supervisor included) can send a packet to a lab address, which would
    otherwise follow the default route out of the machine. Defence in depth: the supervisor
    talks to hosts only from inside their namespaces (``inhost``)."""
    return [f"route {'add' if add else 'del'} unreachable {SUBNET}"]


def host_root_commands(index: int) -> list[str]:
    """In the root namespace: the host's namespace, its veth pair (the peer made directly
    inside the namespace as ``eth0``), the root end enslaved to the bridge."""
    ns, veth = host_name(index), veth_name(index)
    return [
        f"netns add {ns}",
        f"link add {veth} type veth peer name {HOST_IFACE} netns {ns}",
        f"link set {veth} addrgenmode none",
        f"link set {veth} master {BRIDGE}",
        f"link set {veth} up",
    ]


def host_inside_commands(index: int) -> list[str]:
    """Inside the host (``ip -n NS -batch -``): loopback and eth0 up, one address; the only
    routes are the ones the address implies (10.61.0.0/16 on eth0, 127/8 on lo)."""
    return [
        "link set lo up",
        f"addr add {host_address(index)}/{SUBNET.prefixlen} dev {HOST_IFACE}",
        f"link set {HOST_IFACE} up",
    ]


def upload_cap_argv(index: int, bytes_per_s: int) -> list[str]:
    """``tc`` on the host's own eth0 (its egress is the host's upload): a token bucket."""
    if bytes_per_s <= 0:
        raise ValueError("an upload cap is a positive number of bytes per second")
    return [
        "tc",
        "-n",
        host_name(index),
        "qdisc",
        "replace",
        "dev",
        HOST_IFACE,
        "root",
        "tbf",
        "rate",
        f"{bytes_per_s * 8}bit",
        "burst",
        str(TBF_BURST_BYTES),
        "latency",
        f"{TBF_LATENCY_MS}ms",
    ]


def link_command(index: int, up: bool) -> str:
    """A partition: the host's bridge port down (or up again); the namespace is untouched."""
    return f"link set {veth_name(index)} {'up' if up else 'down'}"


def parse_netns_list(text: str) -> list[str]:
    """Names from ``ip netns list`` (lines like ``NAME`` or ``NAME (id: 3)``)."""
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def parse_link_names(text: str) -> list[str]:
    """Interface names from ``ip -o link show`` (``3: NAME@peer: <...>``)."""
    names = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2 and parts[1].strip():
            names.append(parts[1].strip().split("@")[0])
    return names


def cleanup_plan(namespaces: list[str], links: list[str]) -> tuple[list[str], list[str]]:
    """Which of the machine's namespaces and links to remove: only ours, veths before the
    bridge (deleting a namespace also deletes the veth end inside it)."""
    ours_ns = sorted(n for n in namespaces if is_ours(n))
    ours_links = sorted((n for n in links if is_ours(n)), key=lambda n: n == BRIDGE)
    return ours_ns, ours_links
