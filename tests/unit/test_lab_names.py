"""The lab's names, addresses and cleanup plan (issue 9): pure, no namespace made."""

from __future__ import annotations

import pytest

from scryp.lab import names


def test_addresses_follow_the_plan_and_are_unique() -> None:
    assert names.host_address(0) == "10.61.0.1"  # the DHT node of the command lines
    assert names.host_address(1) == "10.61.1.1"  # a /24 of its own
    assert names.host_address(249) == "10.61.249.1"
    assert names.host_address(250) == "10.61.0.2"
    assert names.host_address(names.HOSTS_MAX - 1) == "10.61.249.254"
    addresses = {names.host_address(i) for i in range(0, names.HOSTS_MAX, 97)}
    assert len(addresses) == len(range(0, names.HOSTS_MAX, 97))
    for address in addresses:
        assert address.startswith("10.61.")
        assert not address.endswith((".0", ".255"))
    with pytest.raises(ValueError):
        names.host_address(names.HOSTS_MAX)
    with pytest.raises(ValueError):
        names.host_name(-1)


def test_interface_names_fit_and_carry_the_prefix() -> None:
    for index in (0, 9, 999, names.HOSTS_MAX - 1):
        assert len(names.veth_name(index)) <= names.IFNAME_CHARS_MAX
        assert names.is_ours(names.veth_name(index))
        assert names.is_ours(names.host_name(index))
    assert len(names.BRIDGE) <= names.IFNAME_CHARS_MAX and names.is_ours(names.BRIDGE)
    assert not names.is_ours("eth0") and not names.is_ours("scryplab-")
    assert not names.is_ours("docker0") and not names.is_ours("scryp-h1")


def test_cleanup_plan_takes_only_ours_and_the_bridge_last() -> None:
    namespaces = names.parse_netns_list("scryplab-h1 (id: 3)\nother\nscryplab-h0\n")
    links = names.parse_link_names(
        "1: lo: <LOOPBACK,UP> mtu 65536\n"
        "4: eth0: <BROADCAST> mtu 1400\n"
        "7: scryplab-br: <BROADCAST> mtu 1500\n"
        "9: scryplab-v0@if2: <BROADCAST> mtu 1500\n"
        "10: scryplab-v1@if2: <BROADCAST> mtu 1500\n"
    )
    ours_ns, ours_links = names.cleanup_plan(namespaces, links)
    assert ours_ns == ["scryplab-h0", "scryplab-h1"]
    assert ours_links == ["scryplab-v0", "scryplab-v1", "scryplab-br"]


def test_commands_never_route_out() -> None:
    every = names.bridge_commands() + names.guard_route_commands(add=True)
    for index in (0, 300):
        every += names.host_root_commands(index) + names.host_inside_commands(index)
        every.append(names.link_command(index, up=False))
        every.append(" ".join(names.upload_cap_argv(index, 10_000_000)))
    text = "\n".join(every)
    assert "default" not in text and "forwarding" not in text and "nat" not in text.lower()
    assert "eth0" not in "\n".join(names.host_root_commands(0)).replace("peer name eth0 netns", "")
    assert names.guard_route_commands(add=True) == ["route add unreachable 10.61.0.0/16"]
    assert names.upload_cap_argv(1, 10_000_000)[-6:-4] == ["rate", "80000000bit"]


def test_a_lab_past_the_bridges_ports_is_refused_with_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """1,100 client hosts cannot be ports of one Linux bridge (1,024 at most): exit status 2
    and one line saying so, before anything is made or checked (the kernel's own answer,
    "Exchange full", came only after ~25 s of setting up the hosts before it)."""
    from scryp.lab.__main__ import main

    assert main(["crowd", "--clients", "1100"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "at most 1024" in err
