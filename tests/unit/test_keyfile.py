"""Key files, the .keys quorum and the key tool (§2), on a real filesystem."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from scryp.core.genesis import Genesis
from scryp.crypto import KeyPair
from scryp.errors import ConfigError, MalformedInput
from scryp.keyfile import (
    load_or_create_key,
    parse_quorum,
    read_quorum,
    read_seed,
    write_quorum,
    write_seed,
)
from scryp.keytool import NetworkFiles, init_network


def test_seed_file_is_hex_and_private(tmp_path: Path) -> None:
    path = tmp_path / "k.seed"
    write_seed(path, bytes(range(32)))
    assert path.read_text() == bytes(range(32)).hex() + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_seed(path) == bytes(range(32))


def test_seed_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.seed"
    write_seed(path, bytes(32))
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_seed(path)


@pytest.mark.parametrize("content", ["", "zz" * 32, "ab" * 31, "ab" * 33, "ab" * 5000])
def test_malformed_seed_files(tmp_path: Path, content: str) -> None:
    path = tmp_path / "k.seed"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(ConfigError):
        read_seed(path)


def test_missing_seed_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        read_seed(tmp_path / "absent.seed")


def test_load_or_create_is_stable(tmp_path: Path) -> None:
    first = load_or_create_key(tmp_path / "sub" / "k.seed")
    assert load_or_create_key(tmp_path / "sub" / "k.seed").public == first.public


def test_quorum_round_trip_and_errors(tmp_path: Path) -> None:
    keys = [KeyPair.from_seed(bytes([i]) * 32).public for i in range(3)]
    write_quorum(tmp_path / ".keys", keys)
    assert read_quorum(tmp_path / ".keys") == keys
    text = "# the quorum\n\n" + "\n".join(k.hex() for k in keys) + "\n"
    assert parse_quorum(text) == keys
    with pytest.raises(MalformedInput, match="twice"):
        parse_quorum(f"{keys[0].hex()}\n{keys[0].hex()}\n{keys[1].hex()}\n")
    with pytest.raises(MalformedInput, match="found 2"):
        parse_quorum(f"{keys[0].hex()}\n{keys[1].hex()}\n")
    with pytest.raises(MalformedInput, match="line 2"):
        parse_quorum(f"{keys[0].hex()}\nnot-a-key\n{keys[1].hex()}\n")
    with pytest.raises(ConfigError):
        read_quorum(tmp_path / "absent")


def test_atomic_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    keys = [KeyPair.from_seed(bytes([i]) * 32).public for i in range(3)]
    for _ in range(3):
        write_quorum(tmp_path / ".keys", keys)
    assert sorted(os.listdir(tmp_path)) == [".keys"]


def test_init_network_is_idempotent(tmp_path: Path) -> None:
    servers, faucet, genesis = init_network(tmp_path, 3)
    again_servers, again_faucet, again_genesis = init_network(tmp_path, 3)
    assert [k.public for k in servers] == [k.public for k in again_servers]
    assert faucet.public == again_faucet.public
    assert genesis == again_genesis == Genesis.single(faucet.public)
    files = NetworkFiles(tmp_path)
    assert read_quorum(files.quorum) == [k.public for k in servers]
    assert read_seed(files.faucet_seed) == faucet.seed


def run_keytool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scryp.keytool", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_keytool_command_line(tmp_path: Path) -> None:
    made = run_keytool("new", "alice.seed", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    alice = made.stdout.strip()
    assert run_keytool("id", "alice.seed", cwd=tmp_path).stdout.strip() == alice
    refused = run_keytool("new", "alice.seed", cwd=tmp_path)
    assert refused.returncode == 2 and "refusing to overwrite" in refused.stderr
    for name in ("b", "c"):
        assert run_keytool("new", f"{name}.seed", cwd=tmp_path).returncode == 0
    quorum = run_keytool("quorum", "alice.seed", "b.seed", "c.seed", cwd=tmp_path)
    assert quorum.returncode == 0, quorum.stderr
    assert read_quorum(tmp_path / ".keys")[0].hex() == alice
    genesis = run_keytool("genesis", f"{alice}=4294967295", cwd=tmp_path)
    assert genesis.returncode == 0, genesis.stderr
    assert (tmp_path / "genesis").read_bytes() == bytes.fromhex(alice) + b"\xff" * 4
    short = run_keytool("genesis", f"{alice}=5", cwd=tmp_path)
    assert short.returncode == 2 and "exactly" in short.stderr
