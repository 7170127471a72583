"""BlockChat's experiment on Scryp (issue 13): every server has its own sender replaying a file.

    .venv/bin/python -m benchmarks.bench_blockchat --servers 3 5 7 --payments 100 \\
        --batch 1 16 64 [--round-interval 1.0] [--plot docs/bench_blockchat.png]

For each number of servers N a fresh local network of N ``python -m scryp.server`` processes
(``scryp.localnet``) starts; the faucet funds N sender accounts, one per server, and waits for
that round's certificate. Then, for each batch size B, the payments file is written first:
``DIR/payments-N-B-i.txt``, one line per payment, ``payee-hex amount`` (what BlockChat's
``transactions<i>.txt`` held), K lines per sender, each paying another sender. Every sender
replays its file against its own server, all at once: it reads B lines, signs them as payments
and POSTs them in one ``/transact`` request (a 503, the servers' back-pressure, is retried
after 50 ms), then the next B.

**Decision:** the batch size is payments per HTTP request, what a client controls; how the
leader packs queued payments into Raft entries is the server's own business. The file holds
what to pay, not signed payments: a payment's timestamp must be within 5 s of the servers'
clocks (protocol §6.2), so a file signed ahead would go stale during a long replay; signing is
about 2 % of a sender's time and is counted in it.

Measured, per configuration, from the servers' own ``/metrics`` (``scryp.server.metrics``):
- **throughput**: N·K payments ÷ (first POST → every payment applied on every server);
- **round time**: the mean interval between two rounds sealed on server 0 during the run;
- **submit → certified**: each server times the payments its sender queued, from the POST to
  its round's certificate there; the mean is exact, the median and p95 are interpolated within
  the histogram's buckets (as Prometheus' ``histogram_quantile`` does).
Bounded: a fixed number of payments, every wait has a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import io
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.server_load import post_retrying
from scryp.core.tx import Transaction, encode_many
from scryp.crypto import KeyPair
from scryp.localnet import LocalNetwork

DEADLINE_S = 120.0
FUNDS_PER_SENDER = 10_000_000  # far more than any run pays (K × 10 a batch size)
HTTP_TIMEOUT_S = 10.0
ACCEPTED = 'scryp_payments_applied_total{outcome="accepted"}'
# A copy of a payment its server sent again (protocol §9.3) applied after the payment itself:
# refused as a duplicate, which pays nothing twice; counted, not a failure.
DUPLICATE = 'scryp_payments_applied_total{outcome="duplicate"}'
CERTIFY = "scryp_payment_certify_seconds"
INTERVAL = "scryp_round_interval_seconds"


@dataclass(frozen=True, slots=True)
class Result:
    servers: int
    payments: int  # per sender
    batch: int
    committed: int
    seconds: float
    retries: int
    round_s: float
    latency_mean_s: float
    latency_p50_s: float
    latency_p95_s: float
    refused: int = 0  # e.g. timestamp out of window: a payment queued > 5 s under overload

    @property
    def throughput(self) -> float:
        return self.committed / self.seconds


def sender_key(index: int) -> KeyPair:
    return KeyPair.from_seed(hashlib.sha256(b"blockchat sender %d" % index).digest())


def write_payments_file(path: Path, sender: int, senders: int, count: int) -> None:
    """K lines ``payee-hex amount``: the sender pays the others in turn, 1 to 10 each."""
    others = [sender_key(i).public.hex() for i in range(senders) if i != sender] or [
        hashlib.sha256(b"blockchat payee").hexdigest()
    ]
    lines = [f"{others[j % len(others)]} {1 + j % 10}\n" for j in range(count)]
    path.write_text("".join(lines))


def read_payments_file(path: Path) -> list[tuple[bytes, int]]:
    payments = []
    for line in path.read_text().splitlines():
        payee, amount = line.split()
        payments.append((bytes.fromhex(payee), int(amount)))
    return payments


async def scrape(session: aiohttp.ClientSession, api: str) -> dict[str, float]:
    """A server's /metrics as {'name{labels}': value}."""
    async with session.get(api + "/metrics") as response:
        text = await response.text()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


async def replay(
    session: aiohttp.ClientSession, api: str, key: KeyPair, path: Path, batch: int
) -> int:
    """Send the file's payments, ``batch`` to a request; how many 503s were retried."""
    payments = read_payments_file(path)
    retries = 0

    async def post(body: bytes) -> tuple[int, Any]:
        headers = {"Content-Type": "application/octet-stream"}
        async with session.post(api + "/transact", data=io.BytesIO(body), headers=headers) as r:
            return r.status, await r.json(content_type=None)

    stamp_ms = 0
    for start in range(0, len(payments), batch):
        txs = []
        for payee, amount in payments[start : start + batch]:
            # Strictly increasing stamps: the file repeats (payee, amount) pairs, and two equal
            # payments with one stamp would be one payment twice, refused as a replay (§6.2).
            stamp_ms = max(stamp_ms + 1, int(time.time() * 1000))
            txs.append(Transaction.create(key, payee, amount, stamp_ms))
        retries += await post_retrying(post, encode_many(txs))
    return retries


def quantile(before: dict[str, float], after: dict[str, float], q: float) -> float:
    """``histogram_quantile`` over the payments timed between two scrapes of one server."""
    buckets = sorted(
        (float(name.split('le="')[1].rstrip('"}')), after[name] - before.get(name, 0.0))
        for name in after
        if name.startswith(CERTIFY + "_bucket") and "+Inf" not in name
    )
    total = after.get(f'{CERTIFY}_bucket{{le="+Inf"}}', 0.0) - before.get(
        f'{CERTIFY}_bucket{{le="+Inf"}}', 0.0
    )
    if total <= 0:
        return float("nan")
    rank, lower, below = q * total, 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = bound, count
    return lower  # in the +Inf bucket: the highest finite bound is all that is known


def merged(scrapes: list[dict[str, float]]) -> dict[str, float]:
    """The servers' certify histograms added up (the same buckets everywhere)."""
    total: dict[str, float] = {}
    for samples in scrapes:
        for name, number in samples.items():
            if name.startswith(CERTIFY):
                total[name] = total.get(name, 0.0) + number
    return total


def gained(before: list[dict[str, float]], after: list[dict[str, float]], name: str) -> list[float]:
    """How much a sample grew on each server between two scrapes."""
    return [a.get(name, 0.0) - b.get(name, 0.0) for a, b in zip(after, before, strict=True)]


def refused_on_each(before: list[dict[str, float]], after: list[dict[str, float]]) -> list[float]:
    """How many payments each server applied as refused (duplicates of resent copies aside)."""
    return [
        sum(
            number - b.get(name, 0.0)
            for name, number in a.items()
            if name.startswith("scryp_payments_applied_total") and name not in (ACCEPTED, DUPLICATE)
        )
        for a, b in zip(after, before, strict=True)
    ]


async def run_batch(
    net: LocalNetwork, session: aiohttp.ClientSession, root: Path, count: int, batch: int
) -> Result:
    apis = [s.api for s in net.server_processes]
    files = [root / f"payments-{net.servers}-{batch}-{i}.txt" for i in range(net.servers)]
    for index, path in enumerate(files):
        write_payments_file(path, index, net.servers, count)
    before = [await scrape(session, api) for api in apis]
    started = time.perf_counter()
    retries = await asyncio.gather(
        *(
            replay(session, api, sender_key(i), path, batch)
            for i, (api, path) in enumerate(zip(apis, files, strict=True))
        )
    )
    total = count * net.servers
    after: list[dict[str, float]] = []
    refusals: list[float] = []
    applied_at = 0.0

    async def all_applied() -> bool:
        nonlocal after, applied_at
        after = [await scrape(session, api) for api in apis]
        # Decided on a majority = committed (a server that caught up through the swarm never
        # applies the rounds it skipped: "did not finish" before). Refusals (a payment queued
        # past the window under overload) are a result, reported, not a failure.
        applied_at = time.perf_counter()
        decided = sorted(
            zip(gained(before, after, ACCEPTED), refused_on_each(before, after), strict=True),
            key=sum,
            reverse=True,
        )
        refusals[:] = [refused for _, refused in decided]
        return sum(decided[len(decided) // 2]) >= total

    def on_majority(name: str) -> float:
        values = sorted((a.get(name, -1.0) for a in after), reverse=True)
        return values[len(values) // 2]

    async def all_certified() -> bool:
        nonlocal after
        after = [await scrape(session, api) for api in apis]
        if sum(gained(before, after, CERTIFY + "_count")) >= total:
            return True
        # A server that caught up past its sender's payments never times them: once a
        # majority certified two rounds past the one that applied the last, the rest are in.
        return on_majority("scryp_round_certified") >= sealed + 2

    await net.wait_until(all_applied, DEADLINE_S, "every payment applied", poll_s=0.05)
    sealed = on_majority("scryp_round_sealed")
    await net.wait_until(all_certified, DEADLINE_S, "every payment certified", poll_s=0.05)
    rounds = gained(before[:1], after[:1], INTERVAL + "_count")[0]
    round_s = gained(before[:1], after[:1], INTERVAL + "_sum")[0] / max(rounds, 1)
    old, new = merged(before), merged(after)
    timed = new[CERTIFY + "_count"] - old.get(CERTIFY + "_count", 0)
    mean = (new[CERTIFY + "_sum"] - old.get(CERTIFY + "_sum", 0)) / max(timed, 1)
    return Result(
        net.servers,
        count,
        batch,
        round(sorted(gained(before, after, ACCEPTED), reverse=True)[len(apis) // 2]),
        applied_at - started,
        sum(retries),
        round_s,
        mean,
        quantile(old, new, 0.5),
        quantile(old, new, 0.95),
        round(refusals[len(refusals) // 2]) if refusals else 0,
    )


async def fund(net: LocalNetwork, session: aiohttp.ClientSession) -> None:
    """The faucet pays every sender; wait until that round is certified everywhere."""
    assert net.faucet is not None
    now_ms = int(time.time() * 1000)
    txs = [
        Transaction.create(net.faucet, sender_key(i).public, FUNDS_PER_SENDER, now_ms + i)
        for i in range(net.servers)
    ]
    await post_retrying(partial(net.post, 0, "/transact"), encode_many(txs))

    async def funded() -> bool:
        replies = [
            await net.get(i, f"/tx/{tx.tx_id.hex()}") for i in range(net.servers) for tx in txs
        ]
        for code, body in replies:
            if code == 200 and body["status"] != "accepted":
                raise AssertionError(f"funding a sender failed: {body}")
        return all(code == 200 and body["certified"] for code, body in replies)

    await net.wait_until(funded, DEADLINE_S, "the senders funded")


async def measure(
    servers: int, count: int, batches: list[int], round_s: float, root: Path
) -> list[Result]:
    # One sender per server stands for many clients: lift the per-client signature budget
    # (protocol §9.9), which would otherwise be what this measures.
    unlimited = ["--client-signatures-per-s", "1000000"]
    net = LocalNetwork(
        root / f"net-{servers}", servers=servers, round_interval_s=round_s, server_args=unlimited
    )
    timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
    try:
        await net.start()
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await fund(net, session)
            results = []
            for batch in batches:
                try:
                    results.append(await run_batch(net, session, root, count, batch))
                except TimeoutError as error:  # reported, not hidden: the next ones still run
                    print(f"| {servers} | {servers} × {count} | {batch} | {error} |", flush=True)
                    continue
                print(table(results[-1:]).splitlines()[-1], flush=True)
            return results
    finally:
        await net.stop()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def table(results: list[Result]) -> str:
    lines = [
        "| servers | payments (N × K) | batch | committed | payments/s | round time | "
        "submit → certified mean | p50 | p95 | 503s retried | refused |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.servers} | {r.servers} × {r.payments} | {r.batch} | {r.committed} | "
            f"{r.throughput:,.0f} | {ms(r.round_s)} | {ms(r.latency_mean_s)} | "
            f"{ms(r.latency_p50_s)} | {ms(r.latency_p95_s)} | {r.retries} | {r.refused} |"
        )
    return "\n".join(lines)


def plot(results: list[Result], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(13, 4))
    panels: list[tuple[str, Callable[[Result], float]]] = [
        ("throughput (payments/s)", lambda r: r.throughput),
        ("round time (ms)", lambda r: r.round_s * 1000),
        ("submit → certified, mean (ms)", lambda r: r.latency_mean_s * 1000),
    ]
    keys = sorted({(r.servers, r.payments) for r in results})
    for axis, (label, figure_of) in zip(axes, panels, strict=True):
        for servers, payments in keys:
            chosen = sorted(
                (r for r in results if (r.servers, r.payments) == (servers, payments)),
                key=lambda r: r.batch,
            )
            axis.plot(
                [r.batch for r in chosen],
                [figure_of(r) for r in chosen],
                marker="o",
                label=f"{servers} servers, K={payments}",
            )
        axis.set_xscale("log", base=2)
        axis.set_xlabel("payments per request (batch)")
        axis.set_title(label)
        axis.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


async def main_async(args: argparse.Namespace) -> list[Result]:
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as directory:
        for servers in args.servers:
            for count in args.payments:
                results += await measure(
                    servers, count, args.batch, args.round_interval, Path(directory)
                )
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_blockchat",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--servers", type=int, nargs="+", default=[3, 5, 7])
    parser.add_argument(
        "--payments", type=int, nargs="+", default=[100], help="K, payments in each file"
    )
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--round-interval", type=float, default=1.0, metavar="S")
    parser.add_argument("--plot", type=Path, help="write the plot here (PNG)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    results = asyncio.run(main_async(args))
    when = datetime.date.today().isoformat()
    machine = f"{os.cpu_count()} cores, Python {platform.python_version()}"
    print(
        f"\nBlockChat experiment, {when}, {machine}, {args.round_interval} s rounds, "
        f"{time.monotonic() - started:.0f} s in all"
    )
    print(table(results))
    print(
        f"committed {sum(r.committed for r in results)} of "
        f"{sum(n * k * len(args.batch) for n in args.servers for k in args.payments)} payments"
    )
    if args.plot is not None:
        plot(results, args.plot, f"Scryp, BlockChat experiment ({when}, {machine})")
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
