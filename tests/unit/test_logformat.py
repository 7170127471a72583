"""``--log-format json``: one JSON object per line, a traceback inside it (scryp.logformat)."""

from __future__ import annotations

import argparse
import io
import json
import logging

import pytest

from scryp.logformat import JsonFormatter, add_log_arguments, announce


def test_a_record_with_a_traceback_is_one_json_line() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("scryp.test.logformat")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("two\nlines from %s", "peer 2")
        try:
            raise ValueError("bad frame")
        except ValueError:
            logger.exception("handling a frame")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2  # the newline in the message and the traceback stay inside
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "two\nlines from peer 2"
    assert first["level"] == "WARNING" and first["logger"] == "scryp.test.logformat"
    assert first["time"].endswith("+00:00") and "exception" not in first
    assert second["level"] == "ERROR" and second["message"] == "handling a frame"
    assert second["exception"].startswith("Traceback")
    assert "ValueError: bad frame" in second["exception"]


def test_the_option_and_what_a_command_announces(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_log_arguments(parser)
    assert parser.parse_args([]).log_format == "text"
    args = parser.parse_args(["--log-format", "json"])
    announce(args, "scryp.seeder", "seeder: listening on 127.0.0.1:1")
    announce(parser.parse_args([]), "scryp.seeder", "plain")
    out = capsys.readouterr().out.splitlines()
    assert json.loads(out[0])["message"] == "seeder: listening on 127.0.0.1:1"
    assert out[1] == "plain"
    with pytest.raises(SystemExit):
        parser.parse_args(["--log-format", "xml"])
