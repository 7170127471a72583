"""Malformed HTTP from clients: one WARNING line per client per interval, no traceback
(protocol §9.9); other records untouched."""

from __future__ import annotations

import logging

from scryp.logthrottle import ThrottledClientErrors


def record(client: str, message: str = "Error handling request from %s") -> logging.LogRecord:
    try:
        raise ValueError("Invalid chunk size\n  bad")
    except ValueError as error:
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
    assert first.getMessage().startswith("malformed HTTP from 10.0.0.1: ValueError: Invalid")
    assert "\n" not in first.getMessage()
    assert not throttle.filter(record("10.0.0.1"))
    assert throttle.filter(record("10.0.0.2"))  # another client
    now[0] = 61.0
    assert throttle.filter(record("10.0.0.1"))
    assert throttle.suppressed == 1


def test_other_records_pass_unchanged() -> None:
    throttle = ThrottledClientErrors()
    other = record("x", "something else from %s")
    assert throttle.filter(other) and other.levelno == logging.ERROR and other.exc_info
