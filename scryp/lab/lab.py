"""The lab as one object: a virtual network plus the processes run on its hosts (issue 9).

Owns: the run directory (``DIR/logs/NAME.log`` for each process, one per process), starting
processes inside hosts with ``ip netns exec``, one-shot commands with a deadline, upload caps,
partitions, and tearing everything down. Invariants: leaving the ``with`` block by any path
(return, exception, Ctrl-C, SIGTERM, which is turned into KeyboardInterrupt) ends every
process the lab started (SIGTERM, then SIGKILL) and removes every namespace, veth and the
bridge; a lab killed outright leaves objects with the prefix, which the next start clears;
children also get SIGKILL from the kernel when the lab's main thread dies (PR_SET_PDEATHSIG).
The number of processes is bounded by the hosts, and every one-shot command by its deadline.
Unless ``keep_data``, the hosts' data directories (``HOST_DATA_DIRS``) go too, once their
processes have ended: the logs, the network's files and the reports stay.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from scryp.lab import names, netns

STOP_TIMEOUT_S = 10.0
PR_SET_PDEATHSIG = 1
OUTPUT_BYTES_MAX = 1 << 20  # a one-shot command's stdout kept for its result
# The run directory's parts that hold the hosts' own data (rounds, DHT state, swarm files):
# a crowd of 1M accounts leaves ~1.8 GB in ``clients`` alone (issue 9), and 30 runs filled
# 48 GB of /tmp before they were removed by default.
HOST_DATA_DIRS = ("clients", "data", "seeders", "strangers")


def die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the lab's (main) thread dies."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class HostProcess:
    name: str
    host: int
    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Run in the lab's main thread (the death signal follows the thread that forks)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                ["ip", "netns", "exec", names.host_name(self.host), *self.argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,  # noqa: PLW1509 (the lab's main thread only)
                start_new_session=True,  # a terminal's Ctrl-C goes to the lab, which stops us
            )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.process is not None and self.running:
            self.process.send_signal(signum)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        if self.process is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout_s)


@dataclass(frozen=True, slots=True)
class Completed:
    """A one-shot command's end: exit status (None: killed at its deadline), output, time."""

    returncode: int | None
    stdout: str
    seconds: float


@dataclass
class Lab:
    """``with Lab(run_dir, hosts) as lab:`` a network of ``hosts`` namespaces, then nothing."""

    run_dir: Path
    hosts: int
    python: str = sys.executable
    network: netns.VirtualNetwork = field(default_factory=netns.VirtualNetwork)
    processes: list[HostProcess] = field(default_factory=list)
    keep_data: bool = False
    _old_sigterm: Any = None

    def __enter__(self) -> Lab:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._old_sigterm = signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
        try:
            self.network.create(self.hosts)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """End every process, then remove the network and (unless ``keep_data``) the hosts'
        data; safe to call twice."""
        try:
            for process in self.processes:
                process.signal(signal.SIGTERM)
            for process in self.processes:
                process.stop()
        finally:
            self.network.destroy()
            if self._old_sigterm is not None:
                signal.signal(signal.SIGTERM, self._old_sigterm)
                self._old_sigterm = None
            if not self.keep_data and not any(p.running for p in self.processes):
                for name in HOST_DATA_DIRS:
                    shutil.rmtree(self.run_dir / name, ignore_errors=True)

    # -- processes ---------------------------------------------------------------------------

    def log_path(self, name: str) -> Path:
        return self.run_dir / "logs" / f"{name}.log"

    def start(self, name: str, host: int, argv: list[str]) -> HostProcess:
        """A long-running process on ``host``, logging to ``DIR/logs/NAME.log``."""
        process = HostProcess(name, host, argv, self.log_path(name))
        process.start()
        self.processes.append(process)
        return process

    def python_argv(self, module: str, *args: str) -> list[str]:
        return [self.python, "-m", module, *args]

    async def run(self, name: str, host: int, argv: list[str], timeout_s: float) -> Completed:
        """A command on ``host`` to its end or its deadline (then killed); stderr to its log."""
        log_path = self.log_path(name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(log_path, "ab") as log:
            child = await asyncio.create_subprocess_exec(
                "ip",
                "netns",
                "exec",
                names.host_name(host),
                *argv,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                stdin=asyncio.subprocess.DEVNULL,
                preexec_fn=die_with_parent,
                start_new_session=True,
            )
            try:
                out, _ = await asyncio.wait_for(child.communicate(), timeout_s)
                code: int | None = child.returncode
            except TimeoutError:
                # The whole group (its own session): children it forked hold its stdout too.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                out, _ = await child.communicate()
                code = None
        text = out[:OUTPUT_BYTES_MAX].decode(errors="replace")
        with log_path.open("a") as log_text:
            log_text.write(f"--- exit {code}\n{text}\n")
        return Completed(code, text, time.monotonic() - started)

    # -- the network -------------------------------------------------------------------------

    def cap_upload(self, host: int, bytes_per_s: int) -> None:
        self.network.cap_upload(host, bytes_per_s)

    def cut(self, host: int) -> None:
        self.network.set_link(host, up=False)

    def heal(self, host: int) -> None:
        self.network.set_link(host, up=True)


def _sigterm_to_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
