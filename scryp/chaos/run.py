"""A chaos run: real server processes, real signals, a steady load, then the verdict
(protocol §11).

One TaskGroup runs four loops while the load lasts: the load (bounded by count and time),
the faults of the seeded plan, a monitor that notes when each new certified round is first
seen, and an outcome poller that asks ``GET /tx`` about every payment until a certified
outcome is known and, like ``scryp.client``, resends a payment no server knows of (protocol
§10.6). Then every fault heals, the servers settle, every server is asked about every
payment, and ``checker.check`` replays the rounds on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from scryp.chaos.checker import FinalAnswer, Observed, Report, RoundOnDisk, check
from scryp.chaos.schedule import LEADER, Fault, FaultKind, ScheduleOptions, plan
from scryp.chaos.workload import Batch, History, Kind, Post, Seen, Workload
from scryp.core import snapshot
from scryp.core.balances import decode_balances
from scryp.core.changes import apply_changes
from scryp.core.ledger import WINDOW_MS_DEFAULT
from scryp.core.tx import Transaction
from scryp.errors import MalformedInput
from scryp.localnet import LocalNetwork
from scryp.server.config import ServerLimits
from scryp.server.rounds import RoundStore

log = logging.getLogger(__name__)

HTTP_TIMEOUT_S = 2.0
REQUESTS_IN_FLIGHT_MAX = 32
POLL_PERIOD_S = 1.0  # per payment, until a certified outcome is known
RESEND_AFTER_S = 1.5  # as scryp.client does (protocol §10.6)
MONITOR_PERIOD_S = 0.1
FINAL_ATTEMPTS_MAX = 6  # for each question of the final tally
# The final tally asks every server about every payment (tens of thousands of questions):
# paced under the server's per-client limit, which would otherwise answer most with 429.
FINAL_ASKS_PER_S = 0.75 * ServerLimits().requests_per_s
RECOVERY_S_MAX = 30.0  # a victim not back in agreement by then: noted, and the plan goes on
ROUNDS_KEPT = 1_000_000  # servers keep every round, so the checker can replay from genesis


@dataclass(frozen=True, slots=True)
class ChaosOptions:
    root: Path
    servers: int = 3
    duration_s: float = 60.0
    rate_per_s: float = 30.0
    seed: int = 1
    round_interval_s: float = 1.0
    accounts: int = 32
    faults: bool = True
    settle_timeout_s: float = 60.0
    # Servers' checkpoint rounds (the whole balances file, protocol §4.4.4): a minute's run
    # crosses several, so both kinds of round are checked.
    checkpoint_every: int = 10

    @property
    def payments_max(self) -> int:
        return int(self.duration_s * self.rate_per_s)


@dataclass(slots=True)
class ChaosRun:
    options: ChaosOptions
    net: LocalNetwork = field(init=False)
    history: History = field(default_factory=History)
    workload: Workload = field(init=False)
    faults: list[Fault] = field(init=False)
    fault_log: list[str] = field(default_factory=list)
    certified_seen_s: list[float] = field(default_factory=list)
    newest_certified: int = 0
    statuses: list[dict[str, Any] | None] = field(default_factory=list)
    unavailable: set[int] = field(default_factory=set)  # killed or paused right now
    polling: dict[bytes, float] = field(default_factory=dict)  # tx id -> next poll time
    started_s: float = 0.0
    load_ended_s: float | None = None
    settled: bool = True
    session: aiohttp.ClientSession | None = None
    gate: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(REQUESTS_IN_FLIGHT_MAX)
    )

    def __post_init__(self) -> None:
        o = self.options
        self.net = LocalNetwork(
            o.root,
            servers=o.servers,
            round_interval_s=o.round_interval_s,
            server_args=[
                *("--rounds-kept", str(ROUNDS_KEPT)),
                *("--checkpoint-every", str(o.checkpoint_every)),
            ],
        )
        double_spenders = max(1, int(o.payments_max * 0.1))
        self.workload = Workload.make(o.seed, o.servers, o.accounts, double_spenders)
        schedule = ScheduleOptions(servers=o.servers, duration_s=o.duration_s)
        self.faults = plan(o.seed, schedule) if o.faults else []

    def now_s(self) -> float:
        return time.monotonic() - self.started_s

    # -- the run ---------------------------------------------------------------------------

    async def run(self) -> Report:
        await self.net.start()
        timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as self.session:
                await self._wait_certified(1, "a first certified round")
                await self._fund()
                self.started_s = time.monotonic()
                async with asyncio.TaskGroup() as tasks:
                    watchers = [
                        tasks.create_task(self._monitor()),
                        tasks.create_task(self._poll_outcomes()),
                    ]
                    await asyncio.gather(self._load(tasks), self._inject_faults())
                    self.load_ended_s = self.now_s()
                    for watcher in watchers:
                        watcher.cancel()
                await self._heal()
                final_certified = await self._settle()
                final = await self._final_answers()
                horizons = await self._horizons()
            observed = Observed(
                self.history,
                final,
                final_certified,
                self.certified_seen_s,
                horizons,
                settled=self.settled,
                load_ended_s=self.load_ended_s,
            )
            assert self.net.genesis is not None
            return check(self.net.genesis.balances_file, self._rounds_on_disk(), observed)
        finally:
            await self.net.stop()

    async def _fund(self) -> None:
        faucet = self.net.faucet
        assert faucet is not None
        txs = self.workload.funding(faucet, int(time.time() * 1000))
        for at in range(0, len(txs), 4_000):
            batch = txs[at : at + 4_000]
            for tx in batch:
                self.history.record(tx, Kind.FUND)
            await self._post(0, batch)
        ids = [tx.tx_id for tx in txs]
        deadline = time.monotonic() + self.options.settle_timeout_s
        while ids:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(ids)} funding payments not certified in time")
            answers = await asyncio.gather(*(self._get(0, f"/tx/{i.hex()}") for i in ids[:200]))
            done = {
                i for i, (code, body) in zip(ids, answers, strict=False) if _certified(code, body)
            }
            if not done:
                await asyncio.sleep(0.2)  # the next round, polled: servers cannot signal us
            ids = [i for i in ids if i not in done]

    async def _load(self, tasks: asyncio.TaskGroup) -> None:
        """Send at ``rate_per_s`` until the duration ends or ``payments_max`` are sent."""
        period_s = 1.0 / self.options.rate_per_s
        for n in range(self.options.payments_max):
            at_s = n * period_s
            if at_s > self.options.duration_s:
                return
            delay_s = at_s - self.now_s()
            if delay_s > 0:
                await asyncio.sleep(delay_s)  # pacing the load, not waiting for an event
            batch = self.workload.next(int(time.time() * 1000))
            tasks.create_task(self._send(batch))

    async def _send(self, batch: Batch) -> None:
        sends = []
        for server, tx in batch.posts:
            self.history.record(tx, batch.kind, batch.group)
            self.polling.setdefault(tx.tx_id, self.now_s() + POLL_PERIOD_S)
            sends.append(self._post(server, [tx]))
        await asyncio.gather(*sends)

    # -- HTTP ------------------------------------------------------------------------------

    def _url(self, server: int, path: str) -> str:
        return self.net.server_processes[server].api + path

    async def _get(self, server: int, path: str, *, gated: bool = True) -> tuple[int, Any]:
        """(status, JSON body); (0, None) when the server does not answer in time."""
        async with self.gate if gated else contextlib.nullcontext():
            return await self._get_now(server, path)

    async def _get_now(self, server: int, path: str) -> tuple[int, Any]:
        assert self.session is not None
        try:
            async with self.session.get(self._url(server, path)) as response:
                return response.status, await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return 0, None

    async def _post(self, server: int, txs: list[Transaction]) -> None:
        """Submit payments to one server and record what it said of each."""
        assert self.session is not None
        body = b"".join(tx.encode() for tx in txs)
        headers = {"Content-Type": "application/octet-stream"}
        at_s = self.now_s()
        code, reply = 0, None
        async with self.gate:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                async with self.session.post(
                    self._url(server, "/transact"), data=body, headers=headers
                ) as response:
                    code, reply = response.status, await response.json(content_type=None)
        results = reply.get("results", []) if isinstance(reply, dict) else []
        by_id = {r.get("id"): r for r in results if isinstance(r, dict)}
        for tx in txs:
            result = by_id.get(tx.tx_id.hex(), {})
            post = Post(server, at_s, code, result.get("status", ""), result.get("reason", ""))
            self.history.sent[tx.tx_id].posts.append(post)

    # -- the watchers ----------------------------------------------------------------------

    async def _monitor(self) -> None:
        """Note when each new certified round is first seen, and who leads: one watcher per
        server, outside the load's gate, so a paused server's timeouts (2 s) and a queue of
        outcome polls do not delay seeing the others' rounds (they inflated the stalls)."""
        self.statuses = [None] * self.options.servers
        async with asyncio.TaskGroup() as tasks:
            for server in range(self.options.servers):
                tasks.create_task(self._watch(server))

    async def _watch(self, server: int) -> None:
        while True:
            code, body = await self._get(server, "/status", gated=False)
            status = body if code == 200 and isinstance(body, dict) else None
            self.statuses[server] = status
            certified = int(status.get("certified_round") or 0) if status else 0
            if certified > self.newest_certified:
                self.newest_certified = certified
                self.certified_seen_s.append(self.now_s())
            await asyncio.sleep(MONITOR_PERIOD_S)  # a sampling period

    async def _poll_outcomes(self) -> None:
        """Ask about every payment until a certified outcome is known; resend the unknown."""
        rng = random.Random(f"chaos-poll-{self.options.seed}")
        while True:
            now_s = self.now_s()
            due = [i for i, at in self.polling.items() if at <= now_s]
            await asyncio.gather(*(self._poll_one(tx_id, rng) for tx_id in due))
            await asyncio.sleep(MONITOR_PERIOD_S)  # a polling period

    async def _poll_one(self, tx_id: bytes, rng: random.Random) -> None:
        sent = self.history.sent[tx_id]
        servers = [i for i in range(self.options.servers) if i not in self.unavailable]
        server = rng.choice(servers or [0])
        code, body = await self._get(server, f"/tx/{tx_id.hex()}")
        now_s = self.now_s()
        if code == 200 and isinstance(body, dict):
            seen = Seen(
                server,
                now_s,
                str(body.get("status")),
                str(body.get("reason") or ""),
                int(body.get("round") or 0),
                bool(body.get("certified")),
            )
            sent.seen.append(seen)
            if seen.certified:
                self.polling.pop(tx_id, None)
                return
        elif code == 404 and sent.posts:
            age_s = time.time() - sent.tx.timestamp_ms / 1000
            if age_s > WINDOW_MS_DEFAULT / 1000 + 2 * self.options.round_interval_s:
                self.polling.pop(tx_id, None)  # it can no longer be accepted: undecided
                return
            if now_s - sent.posts[-1].at_s > RESEND_AFTER_S:
                await self._post(server, [sent.tx])
        self.polling[tx_id] = now_s + POLL_PERIOD_S

    # -- faults ----------------------------------------------------------------------------

    async def _inject_faults(self) -> None:
        """The plan, one impaired server at a time: the next fault waits until the last
        victim is back in agreement, then a healthy gap (protocol §11.2)."""
        ready_at_s = 0.0
        last_start_s = self.options.duration_s - ScheduleOptions().quiet_tail_s
        for fault in self.faults:
            start_s = max(fault.at_s, ready_at_s)
            if start_s > last_start_s:
                self.fault_log.append(f"{fault.at_s:6.1f} s {fault.kind}: skipped (no time left)")
                continue
            delay_s = start_s - self.now_s()
            if delay_s > 0:
                await asyncio.sleep(delay_s)  # the plan's time, not a wait for an event
            target = self._target(fault)
            self.unavailable.add(target)
            if fault.kind is FaultKind.KILL:
                self.net.kill(target)  # SIGKILL
            else:
                self.net.pause(target)  # SIGSTOP
            self.fault_log.append(
                f"{self.now_s():6.1f} s {fault.kind} server {target} for {fault.duration_s:.1f} s"
            )
            await asyncio.sleep(fault.duration_s)  # how long the fault lasts
            await self._end_fault(fault.kind, target)
            recovered_s = await self._recovered(target)
            ready_at_s = recovered_s + ScheduleOptions().gap_s[0]

    async def _recovered(self, target: int) -> float:
        """When ``target`` is certified at the others' newest round again (30 s at most)."""
        deadline_s = self.now_s() + RECOVERY_S_MAX
        while self.now_s() < deadline_s:
            replies = await asyncio.gather(
                *(self._get(i, "/status") for i in range(self.options.servers))
            )
            rounds = [
                int(body.get("certified_round") or 0) if code == 200 else -1
                for code, body in replies
            ]
            others = max(r for i, r in enumerate(rounds) if i != target)
            if rounds[target] >= others > 0:
                return self.now_s()
            await asyncio.sleep(MONITOR_PERIOD_S)  # other processes: polled, with a deadline
        self.fault_log.append(f"{self.now_s():6.1f} s server {target} not back within 30 s")
        return self.now_s()

    def _target(self, fault: Fault) -> int:
        if fault.target != LEADER:
            return fault.target
        leaders = [s["server"] for s in self.statuses if s and s.get("role") == "leader"]
        return int(leaders[0]) if leaders else 0

    async def _end_fault(self, kind: FaultKind, target: int) -> None:
        if kind is FaultKind.KILL:
            await self.net.restart(target)
        else:
            self.net.resume(target)  # SIGCONT
        self.unavailable.discard(target)

    async def _heal(self) -> None:
        for target in list(self.unavailable):
            down = self.net.state(target) == "down"
            await self._end_fault(FaultKind.KILL if down else FaultKind.PAUSE, target)

    # -- the end ---------------------------------------------------------------------------

    async def _wait_certified(self, round_min: int, what: str) -> dict[int, tuple[int, str] | None]:
        """Wait until every server is certified at one round >= round_min with one state."""
        state: dict[int, tuple[int, str] | None] = {}

        async def agreed() -> bool:
            replies = await asyncio.gather(
                *(self._get(i, "/status") for i in range(self.options.servers))
            )
            for i, (code, body) in enumerate(replies):
                ok = code == 200 and body.get("certified_round") is not None
                state[i] = (body["certified_round"], body["certified_state_root"]) if ok else None
            values = set(state.values())
            if len(values) != 1:
                return False
            (only,) = values
            return only is not None and only[0] >= round_min

        await self.net.wait_until(agreed, self.options.settle_timeout_s, what, poll_s=0.2)
        return state

    async def _settle(self) -> dict[int, tuple[int, str] | None]:
        """After healing: every server certified at one round, two past the newest seen."""
        newest = len(self.certified_seen_s)
        statuses = [s.get("certified_round") or 0 for s in self.statuses if s]
        target = max([*statuses, newest]) + 2
        try:
            return await self._wait_certified(target, f"agreement at round {target}")
        except TimeoutError:
            self.settled = False
            replies = await asyncio.gather(
                *(self._get(i, "/status") for i in range(self.options.servers))
            )
            return {
                i: (body["certified_round"], body["certified_state_root"]) if code == 200 else None
                for i, (code, body) in enumerate(replies)
            }

    async def _horizons(self) -> dict[int, int]:
        replies = await asyncio.gather(
            *(self._get(i, "/status") for i in range(self.options.servers))
        )
        return {
            i: int(body.get("outcomes_horizon_ms") or 0)
            for i, (code, body) in enumerate(replies)
            if code == 200 and isinstance(body, dict)
        }

    async def _final_answers(self) -> dict[bytes, dict[int, FinalAnswer]]:
        final: dict[bytes, dict[int, FinalAnswer]] = {}

        async def ask(tx_id: bytes, server: int) -> None:
            code, body = await self._get(server, f"/tx/{tx_id.hex()}")
            for attempt in range(FINAL_ATTEMPTS_MAX):
                if code not in (0, 429, 503):
                    break
                # Rate-limited, or no answer within 2 s from a server that a burst of tens of
                # thousands of questions keeps busy: ask again before calling it unanswered.
                await asyncio.sleep(0.5 * (attempt + 1))
                code, body = await self._get(server, f"/tx/{tx_id.hex()}")
            answer = FinalAnswer(code)
            if code == 200 and isinstance(body, dict):
                answer = FinalAnswer(code, str(body.get("status")), str(body.get("reason") or ""))
            final.setdefault(tx_id, {})[server] = answer

        async def tally(server: int) -> None:
            loop = asyncio.get_running_loop()
            start_s = loop.time()
            async with asyncio.TaskGroup() as asks:
                for n, tx_id in enumerate(self.history.sent):
                    early_s = start_s + n / FINAL_ASKS_PER_S - loop.time()
                    if early_s > 0:
                        await asyncio.sleep(early_s)  # pacing, not a wait for an event
                    asks.create_task(ask(tx_id, server))

        await asyncio.gather(*(tally(s) for s in range(self.options.servers)))
        return final

    def _rounds_on_disk(self) -> dict[int, list[RoundOnDisk]]:
        data = self.options.root / "data"
        return {
            server: rounds_on_disk(RoundStore(data / f"server-{server}" / "rounds"))
            for server in range(self.options.servers)
        }


def rounds_on_disk(store: RoundStore) -> list[RoundOnDisk]:
    """One server's rounds, ascending, each with its balances: a checkpoint round's own, or
    the round before's with the round's ``changes`` applied (protocol §4.4.4), so from the
    newest checkpoint on disk on; unknown (None) past a round the server does not hold. A
    checkpoint's balances must also be what the round before's and its ``changes`` make."""
    held: list[RoundOnDisk] = []
    state: bytes | None = None
    previous = -2
    for number in store.rounds():
        agree = True
        rebuilt = None
        if state is not None and number == previous + 1:
            try:
                rebuilt = apply_changes(state, store.read(number, snapshot.CHANGES))
            except (MalformedInput, FileNotFoundError):
                agree = False
        if (store.path(number) / snapshot.BALANCES).is_file():
            state = store.read(number, snapshot.BALANCES)
            agree = agree and rebuilt in (None, state)
        else:
            state = rebuilt
        previous = number
        held.append(
            RoundOnDisk(
                number,
                None if state is None else hashlib.sha256(state).digest(),
                None if state is None else sum(b for _, b in decode_balances(state)),
                store.read(number, snapshot.TRANSACTIONS),
                store.certificate(number) is not None,
                agree,
            )
        )
    return held


def _certified(code: int, body: Any) -> bool:
    return code == 200 and isinstance(body, dict) and bool(body.get("certified"))
