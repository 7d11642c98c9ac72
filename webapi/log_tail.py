"""The newest log records in memory for the 「日志」 page: a logging handler with a bounded ring of entries,
each numbered, masked by the same secret filter as the log files, and a wait for new entries (the live tail)."""
from __future__ import annotations

import logging
import threading
from collections import deque
from datetime import datetime
from typing import Any, Optional

MAX_ENTRIES = 2000
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class LogTail(logging.Handler):
    """Attach to the root logger with the secret filter added (`addFilter`), as the file handlers have it."""

    def __init__(self, capacity: int = MAX_ENTRIES, level: int = logging.DEBUG):
        super().__init__(level)
        self._entries: deque[dict[str, Any]] = deque(maxlen=capacity)
        self._cond = threading.Condition()
        self.version = 0  # sequence number of the newest entry

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            entry = {"time": datetime.fromtimestamp(record.created).isoformat(timespec="milliseconds"),
                     "level": record.levelname, "thread": record.threadName, "logger": record.name,
                     "message": message}
        except Exception:  # logging must never raise into the caller
            self.handleError(record)
            return
        with self._cond:
            self.version += 1
            entry["seq"] = self.version
            self._entries.append(entry)
            self._cond.notify_all()

    def wait_for_change(self, seen: int, timeout: float) -> int:
        with self._cond:
            self._cond.wait_for(lambda: self.version != seen, timeout=timeout)
            return self.version

    def entries(self, after: int = 0, level: Optional[str] = None, text: str = "",
                limit: int = 500) -> list[dict[str, Any]]:
        """Entries newer than `after`, at `level` or above, containing `text` (case-insensitive); the newest
        `limit` of them, oldest first."""
        floor = LEVELS.index(level) if level in LEVELS else 0
        needle = text.lower()
        with self._cond:
            found = [dict(e) for e in self._entries if e["seq"] > after and _rank(e["level"]) >= floor
                     and (not needle or needle in e["message"].lower() or needle in e["logger"].lower())]
        return found[-limit:]


def _rank(level: str) -> int:
    return LEVELS.index(level) if level in LEVELS else len(LEVELS)  # a custom level shows at every filter
