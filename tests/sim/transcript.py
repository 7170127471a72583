"""Scripted scenarios with expected transcripts (etcd's data-driven tests, in small).

A file in ``tests/testdata/raft/`` is a series of blocks, each: command lines, a ``----`` line,
the expected output, a blank line. Lines starting with ``#`` before a block are comments.
Commands (each prints the events it caused: elections, seals with their state root, crashes,
catch-ups; ``status`` prints every server's log summary):

    servers N [round_interval_ms]   build the quorum (first command only)
    run MS                          advance virtual time, no faults
    pay N                           N signed payments to the leader
    crash S | restart S             lose memory (the disk stays) / boot from disk
    partition 0 | 1,2               cut every link between the groups (symmetric)
    heal                            restore every link, restart every crashed server
    status                          one line per server

Regenerate every expected output with ``SCRYP_REWRITE_TRANSCRIPTS=1 pytest tests/sim``; commit
the change only if you understand every line of the diff.
"""

from __future__ import annotations

from dataclasses import dataclass

from .cluster import Cluster, SimOptions

SCENARIO_SEED = 1


@dataclass(frozen=True, slots=True)
class Block:
    comments: tuple[str, ...]
    commands: tuple[str, ...]
    expected: tuple[str, ...]


def parse(text: str) -> list[Block]:
    blocks: list[Block] = []
    comments: list[str] = []
    commands: list[str] = []
    expected: list[str] = []
    state = "commands"
    for line in [*text.splitlines(), ""]:
        if state == "commands":
            if line.startswith("#") or (not line and not commands):
                comments.append(line)
            elif line == "----":
                state = "expected"
            else:
                commands.append(line)
        elif line:
            expected.append(line)
        else:
            blocks.append(Block(tuple(comments), tuple(commands), tuple(expected)))
            comments, commands, expected, state = [], [], [], "commands"
    if commands:
        raise ValueError(f"commands without a ---- line: {commands}")
    return blocks


def run(blocks: list[Block]) -> list[tuple[str, ...]]:
    """The actual output of each block."""
    cluster: Cluster | None = None
    outputs: list[tuple[str, ...]] = []
    for block in blocks:
        trace: list[str] = []
        for command in block.commands:
            words = command.split()
            if words[0] == "servers":
                interval_ms = int(words[2]) if len(words) > 2 else 1_000
                options = SimOptions(servers=int(words[1]), round_interval_ms=interval_ms)
                cluster = Cluster(seed=SCENARIO_SEED, options=options, trace=trace)
                continue
            if cluster is None:
                raise ValueError("the first command must be 'servers N'")
            cluster.trace = trace
            _execute(cluster, words, trace)
        outputs.append(tuple(trace) or ("ok",))
    return outputs


def _execute(cluster: Cluster, words: list[str], trace: list[str]) -> None:
    match words:
        case ["run", duration_ms]:
            cluster.run(int(duration_ms))
        case ["pay", count]:
            queued = cluster.pay(int(count))
            trace.append(f"t={cluster.now_ms:>6} {queued} of {count} payments queued")
        case ["crash", server]:
            cluster.crash(int(server))
        case ["restart", server]:
            cluster.restart(int(server))
        case ["partition", *groups]:
            cluster.partition([[int(s) for s in g.split(",")] for g in " ".join(groups).split("|")])
        case ["heal"]:
            cluster.heal()
        case ["status"]:
            trace.extend(cluster.status())
        case _:
            raise ValueError(f"unknown command {' '.join(words)!r}")


def render(blocks: list[Block], outputs: list[tuple[str, ...]]) -> str:
    parts: list[str] = []
    for block, output in zip(blocks, outputs, strict=True):
        parts.extend(block.comments)
        parts.extend(block.commands)
        parts.append("----")
        parts.extend(output)
        parts.append("")
    return "\n".join(parts).rstrip("\n") + "\n"
