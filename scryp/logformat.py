"""How every Scryp process logs: one place that reads ``--log-format`` and sets up logging.

``--log-format text`` (the default) writes ``time LEVEL logger: message`` lines;
``--log-format json`` writes one JSON object per line, for log collectors (Loki, journald,
Elasticsearch): ``time`` (ISO 8601, UTC, milliseconds), ``level``, ``logger``, ``message``,
and ``exception`` (the traceback's text) when there is one. A multi-line message or traceback
stays inside its JSON string, so one record is always one line. The default can also be set
with the environment variable ``SCRYP_LOG_FORMAT`` (a test network passes its choice on to its
servers and seeders with the option).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from datetime import UTC, datetime

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def add_log_arguments(parser: argparse.ArgumentParser) -> None:
    default = os.environ.get("SCRYP_LOG_FORMAT", "text")
    parser.add_argument(
        "--log-format",
        choices=FORMATS,
        default=default if default in FORMATS else "text",
        help="text lines, or one JSON object per line (time, level, logger, message, exception)",
    )


def formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    return logging.Formatter(TEXT_FORMAT)


def setup_logging(args: argparse.Namespace, level: int | str) -> None:
    """Log to stderr at ``level`` in the format ``args.log_format`` names."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(getattr(args, "log_format", "text")))
    logging.basicConfig(level=level, handlers=[handler])


def announce(args: argparse.Namespace, logger: str, text: str) -> None:
    """Print a line a user of the command must see whatever the log level (where it listens,
    what it did) to stdout: as it is, or as a JSON record when logs are JSON, so that a file
    holding both streams stays one JSON object per line."""
    if getattr(args, "log_format", "text") == "json":
        record = logging.LogRecord(logger, logging.INFO, "", 0, text, None, None)
        text = JsonFormatter().format(record)
    print(text, flush=True)
