"""Stories told by the simulator, compared line by line with ``tests/testdata/raft/*.txt``.

Method: each file is a script of commands with the expected events after each (see
``transcript.py``); the safety checker runs underneath the whole time. A mismatch shows the
diff; ``SCRYP_REWRITE_TRANSCRIPTS=1`` rewrites the files instead of comparing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .transcript import parse, render, run

TESTDATA = Path(__file__).resolve().parent.parent / "testdata" / "raft"
SCENARIOS = sorted(TESTDATA.glob("*.txt"))


def test_every_story_is_there() -> None:
    names = {path.stem for path in SCENARIOS}
    assert {"first_election", "leader_crash_mid_round", "partition_heal", "catch_up"} <= names


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_transcript(path: Path) -> None:
    text = path.read_text()
    blocks = parse(text)
    actual = render(blocks, run(blocks))
    if os.environ.get("SCRYP_REWRITE_TRANSCRIPTS") == "1":
        path.write_text(actual)
        return
    assert actual == text
