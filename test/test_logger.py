"""Logging: UTF-8 file, retention cleanup, secrets never written."""
import logging
import os
import time

from logger import LOG_FILE_NAME, delete_old_logs, setup_logging


def test_log_file_is_utf8_and_secrets_are_masked(tmp_path):
    secret_filter = setup_logging(tmp_path, secrets=["tok-123456"], console=False)
    secret_filter.add("acct-98765")
    log = logging.getLogger("test.logger")
    log.info("止损卖出 600036.SH token=%s account=%s", "tok-123456", "acct-98765")
    log.info("header X-API-Token: abcdefgh")
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = (tmp_path / LOG_FILE_NAME).read_text(encoding="utf-8")
    assert "止损卖出 600036.SH" in text
    assert "tok-123456" not in text and "acct-98765" not in text and "abcdefgh" not in text
    assert text.count("******") == 3
    setup_logging(tmp_path / "other", console=False)  # detach from tmp_path


def test_old_logs_deleted_recent_kept(tmp_path):
    old = tmp_path / "qmt_trader.log.2020-01-01"
    recent = tmp_path / "qmt_trader.log.2099-01-01"
    unrelated = tmp_path / "notes.txt"
    for path in (old, recent, unrelated):
        path.write_text("x")
    now = time.time()
    os.utime(old, (now - 31 * 86400, now - 31 * 86400))
    os.utime(unrelated, (now - 90 * 86400, now - 90 * 86400))
    assert delete_old_logs(tmp_path, 30, now) == [old]
    assert recent.exists() and unrelated.exists() and not old.exists()
