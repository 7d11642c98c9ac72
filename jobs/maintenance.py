"""Nightly database maintenance: an online backup of every SQLite database (sqlite3's backup API, safe while
the daemon writes), removal of backups older than BACKUP_RETENTION_DAYS, and PRAGMA integrity_check."""
from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from datetime import date, timedelta
from pathlib import Path
from typing import Iterable


def backup_databases(paths: Iterable[Path], backup_root: Path, day: date) -> list[Path]:
    """Copy each database to `backup_root/<day>/<name>`; returns the copies."""
    target_dir = backup_root / day.isoformat()
    target_dir.mkdir(parents=True, exist_ok=True)
    copies = []
    for path in paths:
        target = target_dir / Path(path).name
        with closing(sqlite3.connect(str(path), timeout=30)) as source, closing(sqlite3.connect(str(target))) as copy:
            source.backup(copy)
        copies.append(target)
    return copies


def prune_backups(backup_root: Path, today: date, retention_days: int) -> list[Path]:
    """Delete day folders older than `retention_days` before `today`; returns what was removed."""
    cutoff = today - timedelta(days=retention_days)
    removed = []
    if not backup_root.is_dir():
        return removed
    for folder in backup_root.iterdir():
        try:
            folder_day = date.fromisoformat(folder.name)
        except ValueError:
            continue  # not ours
        if folder.is_dir() and folder_day < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def integrity(path: Path) -> str:
    """'ok' or SQLite's first complaint."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
