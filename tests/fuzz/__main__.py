"""Run one fuzz target under atheris (coverage-guided): ``python -m tests.fuzz TARGET``.

``--runs N`` bounds the run (a load loop here is always bounded); the seed corpus of
``targets.seeds()`` is written to a temporary directory so the fuzzer starts inside each
format. A crash (an exception other than the protocol's, or a non-canonical decode) stops
the run with exit status 1 and leaves the input under ``--artifacts`` (libFuzzer's
``crash-<sha1>`` files) to be turned into a regression test (docs/RELIABILITY.md, fuzzing).
``tools/fuzz`` runs every target.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["scryp"]):
    from tests.fuzz import targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=sorted(targets.TARGETS))
    parser.add_argument("--runs", type=int, default=100_000, help="inputs to try (bound)")
    parser.add_argument("--seed", type=int, default=1, help="libFuzzer's random seed")
    parser.add_argument("--max-len", type=int, default=4096, help="longest input, bytes")
    parser.add_argument("--artifacts", type=Path, default=Path("tests/fuzz/crashes"))
    args = parser.parse_args()
    target = targets.TARGETS[args.target]
    args.artifacts.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"scryp-fuzz-{args.target}-") as corpus:
        for i, seed in enumerate(targets.seeds()[args.target]):
            (Path(corpus) / f"seed-{i}").write_bytes(seed)
        argv = [
            sys.argv[0],
            f"-runs={args.runs}",
            f"-seed={args.seed}",
            f"-max_len={args.max_len}",
            f"-artifact_prefix={args.artifacts}/{args.target}-",
            "-print_final_stats=1",
            corpus,
        ]
        atheris.Setup(argv, lambda data: target(data) and None)
        atheris.Fuzz()


if __name__ == "__main__":
    main()
