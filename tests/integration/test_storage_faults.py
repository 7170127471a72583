"""Storage faults on a real server (protocol §9.10): a full disk, a damaged round file, a round
directory gone, a write-ahead log damaged in the middle. The server never signs or serves a
wrong state: it stops with one clear line (no traceback) while the other two go on, and once
the fault is gone it restarts and agrees. Real processes, real signals, a real tmpfs.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from scryp.localnet import LocalNetwork
from scryp.raftstore import RaftStore
from scryp.server.rounds import RoundStore

from .test_server import ALICE, DEADLINE_S, ROUND_S, pay, settle, wait_certified

pytestmark = pytest.mark.slow

VICTIM = 2
TMPFS_BYTES = 8 * 1024 * 1024


def data_dir(net: LocalNetwork, index: int) -> Path:
    return net.root / "data" / f"server-{index}"


async def exits(net: LocalNetwork, index: int) -> int:
    code = await net.server_processes[index].child.wait(DEADLINE_S)
    assert code is not None, f"server {index} did not stop"
    return code


def log_of(net: LocalNetwork, index: int) -> str:
    return net.server_processes[index].child.log_path.read_text(errors="replace")


async def agree_again(net: LocalNetwork) -> None:
    """Restart the victim; all three certify the same round with the same state."""
    await net.restart(VICTIM)
    statuses = await wait_certified(net, 1)
    newest = max(s["certified_round"] for s in statuses)
    statuses = await wait_certified(net, newest + 2)
    assert len({(s["certified_round"], s["certified_state_root"]) for s in statuses}) == 1


def body_of_first_frame(wal: bytes) -> int:
    """An offset inside the first record's body (frame: length 4 | crc 4 | kind 1 | body)."""
    length = int.from_bytes(wal[:4], "big")
    assert length > 0 and 9 + length < len(wal), "the log holds more than one record"
    return 9 + length // 2


def mount_tmpfs(where: Path) -> None:
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("a full disk needs a tmpfs, and mounting one needs root (CI runs as root)")
    argv = ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(where)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


def fill(directory: Path) -> Path:
    """Write until the file system says it is full (ENOSPC); the filler's path."""
    filler = directory / "filler"
    with filler.open("wb") as file:
        try:
            while True:  # bounded by the tmpfs's size
                file.write(bytes(64 * 1024))
                file.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC, error
    return filler


def test_a_full_disk_stops_the_server_cleanly_and_it_rejoins_when_freed(tmp_path: Path) -> None:
    root = tmp_path / "net"
    victim_dir = root / "data" / f"server-{VICTIM}"
    mount_tmpfs(victim_dir)

    async def scenario() -> None:
        net = LocalNetwork(root, servers=3, round_interval_s=ROUND_S)
        try:
            await net.start()
            await wait_certified(net, 1)
            filler = await asyncio.to_thread(fill, victim_dir)
            assert await exits(net, VICTIM) == 1  # every round writes: it hits the wall
            text = log_of(net, VICTIM)
            assert "stopping on a storage fault" in text and "No space left" in text
            assert "Traceback" not in text
            assert net.faucet is not None
            tx = pay(net.faucet, ALICE, 1_000)
            code, _ = await net.post(0, "/transact", tx.encode())
            assert code == 202
            outcome = await settle(net, tx, via=0)  # the other two go on
            assert outcome["status"] == "accepted"
            filler.unlink()
            await agree_again(net)
        finally:
            await net.stop()
            subprocess.run(["umount", str(victim_dir)], check=False)

    asyncio.run(scenario())


def test_damaged_rounds_and_logs_stop_the_server_with_a_clear_message(tmp_path: Path) -> None:
    async def scenario() -> None:
        # Compact Raft's log after a second, so the victim's log soon starts from a round.
        # (to a checkpoint round, protocol §9.5: one every 2 rounds here).
        fast = ["--compaction-lag", "1", "--checkpoint-every", "2"]
        net = LocalNetwork(tmp_path / "net", servers=3, round_interval_s=ROUND_S, server_args=fast)
        try:
            await net.start()
            await wait_certified(net, 3)
            victim = data_dir(net, VICTIM)
            assert net.genesis is not None
            network_id = net.genesis.network_id

            async def stop_victim() -> int:
                net.kill(VICTIM)
                return await exits(net, VICTIM)

            def snapshot_round() -> Path:
                meta = RaftStore(victim / "raft", network_id).load().snapshot
                assert meta.round > 0, "the victim has not compacted yet"
                return RoundStore(victim / "rounds").path(meta.round)

            async def restarted_and_stopped(expected: str, code: int = 1) -> None:
                await net.restart(VICTIM)
                assert await exits(net, VICTIM) == code
                text = log_of(net, VICTIM).rsplit("resuming", 1)[-1]
                assert expected in text and "Traceback" not in text, text[-2000:]

            await wait_certified(net, 8)  # the victim has compacted past round 0
            await stop_victim()
            wal = victim / "raft" / "wal"
            intact = wal.read_bytes()
            damaged = bytearray(intact)
            damaged[body_of_first_frame(intact)] ^= 0xFF  # frames follow: not a torn tail
            wal.write_bytes(bytes(damaged))
            await restarted_and_stopped("checksum mismatch", code=2)
            wal.write_bytes(intact)
            balances = snapshot_round() / "balances"
            data = bytearray(balances.read_bytes())
            data[-1] ^= 0xFF
            balances.write_bytes(bytes(data))
            await restarted_and_stopped("does not give the state root the log names")
            shutil.rmtree(snapshot_round())
            await restarted_and_stopped("which the write-ahead log names, is gone")
            # The fault is gone when the damaged data is: a server without its data directory
            # catches up through the swarm like a new one (protocol §9.10).
            shutil.rmtree(victim)
            await agree_again(net)
        finally:
            await net.stop()

    asyncio.run(scenario())
