"""Malformed HTTP from clients: one WARNING line per client per interval, no traceback
(protocol §9.9); other records untouched."""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import BadHttpMessage

from scryp.logthrottle import ThrottledClientErrors


def record(
    client: str, message: str = "Error handling request from %s", ours: bool = False
) -> logging.LogRecord:
    try:
        if ours:
            raise KeyError("a bug in a handler")
        raise BadHttpMessage("Invalid chunk size\n  bad")
    except (BadHttpMessage, KeyError) as error:
        exc_info = (type(error), error, error.__traceback__)
    return logging.LogRecord(
        "aiohttp.server", logging.ERROR, __file__, 1, message, (client,), exc_info
    )


def test_one_line_per_client_per_interval() -> None:
    now = [0.0]
    throttle = ThrottledClientErrors(interval_s=60, clock=lambda: now[0])
    first = record("10.0.0.1")
    assert throttle.filter(first)
    assert first.levelno == logging.WARNING and first.exc_info is None
    assert first.getMessage().startswith("malformed HTTP from 10.0.0.1: BadHttpMessage: 400")
    assert "\n" not in first.getMessage()
    assert not throttle.filter(record("10.0.0.1"))
    assert throttle.filter(record("10.0.0.2"))  # another client
    now[0] = 61.0
    assert throttle.filter(record("10.0.0.1"))
    assert throttle.suppressed == 1


def test_other_records_and_our_own_errors_pass_unchanged() -> None:
    """Only a client's malformed HTTP is shortened: an exception in our own handler keeps
    its traceback, every time (review finding)."""
    throttle = ThrottledClientErrors()
    other = record("x", "something else from %s")
    assert throttle.filter(other) and other.levelno == logging.ERROR and other.exc_info
    for _ in range(2):
        ours = record("10.0.0.9", ours=True)
        assert throttle.filter(ours) and ours.levelno == logging.ERROR and ours.exc_info
