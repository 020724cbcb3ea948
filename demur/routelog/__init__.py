"""Routes as training data: a JSON-lines log of each route's query, steps, scores and verdict,
with the human outcomes that arrive later, retention and redaction; and a reader that joins
them into labelled rows for `demur eval`, `demur calibrate` and drift monitoring."""

from demur.routelog.files import log_files
from demur.routelog.log import RouteLog
from demur.routelog.logged import LoggedRouter, Routes
from demur.routelog.reader import LogEvent, RouteLogReader, graded_step, is_accepted, is_route_log
from demur.routelog.records import OutcomeSource, hash_text

__all__ = [
    "LogEvent",
    "LoggedRouter",
    "OutcomeSource",
    "RouteLog",
    "RouteLogReader",
    "Routes",
    "graded_step",
    "hash_text",
    "is_accepted",
    "is_route_log",
    "log_files",
]
