"""The lab's virtual network: network namespaces on a private bridge, made and removed with
iproute2's ``ip`` and ``tc`` (issue 9).

Owns: running the command lines of ``names`` (``ip -batch`` for speed), the safety check
after setup, partitions and upload caps, and removal. Invariants: every object made carries
``names.PREFIX``; ``clear`` removes all of them (and ends the processes still inside our
namespaces, which only the lab starts), so a crash's leftovers go at the next start; no host
has a default route (checked after setup: a host that has one is a bug, and the lab stops);
nothing here touches a real interface, forwarding or NAT.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field

from scryp.errors import LocalError
from scryp.lab import kernel_limits, names

COMMAND_TIMEOUT_S = 120.0
NETNS_DIR = "/run/netns"


LOCK_PATH = "/run/scryplab.lock"


def take_lock() -> int:
    """One lab per machine: its start clears every object with the prefix, which would pull
    the network from under a lab already running. The lock goes with the process."""
    fd = os.open(LOCK_PATH, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LabUnavailable("another lab is running on this machine") from None
    return fd


def too_many_hosts(count: int) -> str:
    return (
        f"{count} hosts: the lab's bridge holds at most {names.BRIDGE_PORTS_MAX} "
        "(a Linux bridge's ports), one per host"
    )


class LabUnavailable(LocalError):
    """This machine cannot make the lab (not root, no ``ip``): say why, change nothing."""


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here, or None if they can."""
    if os.name != "posix" or not hasattr(os, "geteuid"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "making network namespaces needs root (run as root, or skip the lab)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"`{tool}` (iproute2) is not installed"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"`ip netns` does not work here: {probe.stderr.strip()}"
    return None


def _run(argv: list[str], stdin: str | None = None, check: bool = True) -> str:
    done = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
    )
    if check and done.returncode != 0:
        raise LocalError(f"{' '.join(argv[:4])}…: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def ip_batch(lines: list[str], netns: str | None = None, force: bool = False) -> None:
    """Lines of ``ip`` commands in one process (``-force``: go on past an error)."""
    if not lines:
        return
    argv = ["ip"] + (["-n", netns] if netns else []) + (["-force"] if force else [])
    _run([*argv, "-batch", "-"], stdin="\n".join(lines) + "\n", check=not force)


def our_objects() -> tuple[list[str], list[str]]:
    """(namespaces, links) on this machine that carry the lab's prefix."""
    namespaces = names.parse_netns_list(_run(["ip", "netns", "list"]))
    links = names.parse_link_names(_run(["ip", "-o", "link", "show"]))
    return names.cleanup_plan(namespaces, links)


def guard_route_present() -> bool:
    routes = _run(["ip", "-4", "route", "show", "type", "unreachable", str(names.SUBNET)])
    return bool(routes.strip())


def clear() -> tuple[int, int]:
    """Remove every namespace and link with the lab's prefix; (namespaces, links) removed.

    Processes still in our namespaces (a crashed lab's children) are ended first: a
    namespace outlives its name while a process holds it."""
    namespaces, links = our_objects()
    for ns in namespaces:
        for pid in _run(["ip", "netns", "pids", ns], check=False).split():
            if pid.isdigit():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
    ip_batch([f"netns delete {ns}" for ns in namespaces], force=True)
    _, links = our_objects()  # a deleted namespace took its veth pair with it
    ip_batch([f"link delete {link}" for link in links], force=True)
    if guard_route_present():
        ip_batch(names.guard_route_commands(add=False))
    kernel_limits.restore()
    left_ns, left_links = our_objects()
    if left_ns or left_links:
        raise LocalError(f"could not remove {left_ns + left_links}")
    return len(namespaces), len(links)


@dataclass
class VirtualNetwork:
    """Hosts 0..count-1, each a namespace with one address, joined by the lab's bridge."""

    count: int = 0
    setup_s: float = 0.0
    lock_fd: int | None = None
    down: set[int] = field(default_factory=set)

    def create(self, count: int) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise LabUnavailable(reason)
        if count > names.BRIDGE_PORTS_MAX:
            raise LabUnavailable(too_many_hosts(count))
        if self.lock_fd is None:
            self.lock_fd = take_lock()
        clear()
        started = time.monotonic()
        self.count = count
        kernel_limits.raise_for(count)
        root = names.guard_route_commands(add=True) + names.bridge_commands()
        for index in range(count):
            root += names.host_root_commands(index)
        ip_batch(root)
        for index in range(count):
            ip_batch(names.host_inside_commands(index), netns=names.host_name(index))
        self.check_safe()
        self.setup_s = time.monotonic() - started

    def check_safe(self) -> None:
        """Fail loudly if a host could reach anything but the bridge: a default route, or a
        route other than the ones its address and loopback imply."""
        for index in range(self.count):
            ns = names.host_name(index)
            routes = _run(["ip", "-n", ns, "-4", "route", "show", "table", "all"])
            for line in routes.splitlines():
                words = line.split()
                if not words:
                    continue
                if words[0] == "default":
                    raise LocalError(f"{ns} has a default route: {line}")
                if "dev" in words and words[words.index("dev") + 1] not in ("lo", "eth0"):
                    raise LocalError(f"{ns} has a route on another device: {line}")
        if not guard_route_present():
            raise LocalError(f"no unreachable route for {names.SUBNET} in the root namespace")
        bridge_addrs = _run(["ip", "-o", "addr", "show", "dev", names.BRIDGE])
        if bridge_addrs.strip():
            raise LocalError(f"{names.BRIDGE} has an address: {bridge_addrs.strip()}")

    def cap_upload(self, index: int, bytes_per_s: int) -> None:
        _run(names.upload_cap_argv(index, bytes_per_s))

    def set_link(self, index: int, up: bool) -> None:
        ip_batch([names.link_command(index, up)])
        if up:
            self.down.discard(index)
        else:
            self.down.add(index)

    def destroy(self) -> None:
        if self.lock_fd is None:
            return  # never made (or another lab's): nothing of ours to remove
        clear()
        self.count = 0
        os.close(self.lock_fd)
        self.lock_fd = None


def sent_bytes(index: int) -> int:
    """Bytes host ``index`` has sent on its eth0 (its upload, protocol overhead included)."""
    out = _run(["ip", "-j", "-s", "-n", names.host_name(index), "link", "show", names.HOST_IFACE])
    return int(json.loads(out)[0]["stats64"]["tx"]["bytes"])
