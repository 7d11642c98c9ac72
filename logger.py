"""Logging setup: UTF-8 file rotated daily plus console, deletion of log files older than the retention,
and a filter that keeps secrets (API token, account id) out of every record."""
from __future__ import annotations

import logging
import logging.handlers
import re
import sys
import time
from pathlib import Path
from typing import Iterable

LOG_FILE_NAME = "qmt_trader.log"
_FORMAT = "%(asctime)s %(levelname)s [%(threadName)s] %(name)s: %(message)s"


class SecretFilter(logging.Filter):
    """Replaces registered secret strings (and anything that looks like a token header) with ******."""

    _HEADER = re.compile(r"(X-API-Token['\"]?\s*[:=]\s*['\"]?)([^\s'\"]+)", re.IGNORECASE)

    def __init__(self, secrets: Iterable[str] = ()):
        super().__init__()
        self._secrets = {s for s in secrets if s and len(s) >= 4}

    def add(self, secret: str) -> None:
        if secret and len(secret) >= 4:
            self._secrets.add(secret)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self._HEADER.sub(r"\1******", message)
        for secret in self._secrets:
            cleaned = cleaned.replace(secret, "******")
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


def setup_logging(log_dir: str | Path, level: str = "INFO", retention_days: int = 30,
                  secrets: Iterable[str] = (), console: bool = True) -> SecretFilter:
    """Configure the root logger once (idempotent: replaces handlers it installed before). Returns the
    secret filter so that secrets learnt later (a generated token) can be added."""
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    delete_old_logs(log_dir, retention_days)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_qmt_handler", False):
            root.removeHandler(handler)
            handler.close()
    secret_filter = SecretFilter(secrets)
    formatter = logging.Formatter(_FORMAT)
    file_handler = logging.handlers.TimedRotatingFileHandler(
        log_dir / LOG_FILE_NAME, when="midnight", encoding="utf-8", backupCount=0, delay=True)
    handlers: list[logging.Handler] = [file_handler]
    if console:
        handlers.append(logging.StreamHandler(_utf8_stream(sys.stderr)))
    for handler in handlers:
        handler._qmt_handler = True  # type: ignore[attr-defined]
        handler.setFormatter(formatter)
        handler.addFilter(secret_filter)
        root.addHandler(handler)
    root.setLevel(level)
    return secret_filter


def delete_old_logs(log_dir: str | Path, retention_days: int, now: float | None = None) -> list[Path]:
    """Delete `*.log*` files in `log_dir` last modified more than `retention_days` ago; return them."""
    cutoff = (now if now is not None else time.time()) - retention_days * 86400
    deleted = []
    for path in Path(log_dir).glob("*.log*"):
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                deleted.append(path)
        except OSError:
            continue  # in use (Windows) or already gone: try again next day
    return deleted


def _utf8_stream(stream):
    """A Windows console may default to GBK; write UTF-8 and never crash on a glyph."""
    reconfigure = getattr(stream, "reconfigure", None)
    if callable(reconfigure):
        try:
            reconfigure(encoding="utf-8", errors="replace")
        except (ValueError, OSError):
            pass
    return stream
