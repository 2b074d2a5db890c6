"""Benchmarks print their figures on stdout: the server they run in-process logs elsewhere."""

from __future__ import annotations

import logging
import sys

import structlog


def quiet_logs() -> None:
    """The server's log lines to stderr, warnings only: stdout is for the figures."""
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(message)s")
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
