"""Every refusal the daemon makes at start-up is also a doctor check in the same words (issue 26 item 4): each
case below prepares a data dir the way the owner could have left it, runs `python main.py` (it must refuse with
its exit code and one Chinese line, no traceback) and `python main.py --doctor` on the same dir (it must exit
non-zero and show that line). Also the refusals' wording itself (issue 26 item 5): a full disk at start is one
「磁盘已满」 line, and a damaged market.db is named as the file in Chinese, without sqlite's English."""
from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import persistence.health as storage_health
from daemon_support import DAILY, PROJECT, free_port

LOG_PREFIX = re.compile(r"^\d{4}-\d{2}-\d{2} [\d:,]+ \w+ \[[^\]]*\] [\w.]+: ")
REFUSAL = re.compile(r"拒绝启动|启动失败")
SQLITE_ENGLISH = re.compile(r"malformed|not a database|disk image|disk I/O|database or disk", re.IGNORECASE)


def run(root: Path, *args: str, port: int = 0, timeout: float = 120) -> subprocess.CompletedProcess:
    command = [sys.executable, str(PROJECT / "main.py"), "--data-dir", str(root / "data"),
               "--log-dir", str(root / "logs"), "--port", str(port or free_port()), *args]
    env = {k: v for k, v in os.environ.items() if k != "QMT_API_TOKEN"}
    return subprocess.run(command, cwd=root, capture_output=True, text=True, encoding="utf-8", timeout=timeout,
                          env=env, stdin=subprocess.DEVNULL)


def refusal_words(result: subprocess.CompletedProcess, exit_code: int) -> str:
    """The daemon's one refusal line, without the log prefix and the 「启动失败：」 lead-in."""
    output = result.stderr + result.stdout
    assert result.returncode == exit_code, output
    assert "Traceback" not in output, output
    lines = [LOG_PREFIX.sub("", line) for line in output.splitlines() if REFUSAL.search(line)]
    assert len(lines) == 1, output
    return lines[0].removeprefix("启动失败：")


def garbage(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a database, it was overwritten " * 200)


def used_data_dir(root: Path) -> Path:
    """A data dir after a first start: config.db and the sim account exist, the marker is written."""
    from persistence.storage import Database

    data = root / "data"
    data.mkdir(parents=True)
    for name in ("config.db", "sim_trading.db"):
        Database(data / name).close()
    storage_health.mark_used(data)
    return data


def corrupt_config(root: Path) -> list[str]:
    garbage(root / "data" / "config.db")
    return []


def empty_config(root: Path) -> list[str]:
    (root / "data").mkdir(parents=True)
    (root / "data" / "config.db").write_bytes(b"")
    return []


def account_missing(root: Path) -> list[str]:
    (used_data_dir(root) / "sim_trading.db").unlink()
    return []


def account_empty(root: Path) -> list[str]:
    (used_data_dir(root) / "sim_trading.db").write_bytes(b"")
    return []


def market_corrupt(root: Path) -> list[str]:
    used_data_dir(root)
    garbage(root / "data" / "market.db")
    return []


def replay_folder_missing(root: Path) -> list[str]:
    return ["--replay-data", str(root / "no-such-folder")]


def invalid_config(root: Path) -> list[str]:
    return ["--set", "STOP_LOSS_RATIO=0.3"]


def bad_holidays_file(root: Path) -> list[str]:
    path = root / "holidays.txt"
    path.write_text("# 2027\n2027-01-01\n2027-02-30\n", encoding="utf-8")
    return ["--set", f'HOLIDAYS_FILE="{path.as_posix()}"']


def log_dir_is_a_file(root: Path) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "logs").write_text("not a folder", encoding="utf-8")
    return []


def live_without_miniqmt(root: Path) -> list[str]:
    return ["--live"]


# (case, how the owner left things, the daemon's exit code)
REFUSALS = [
    ("corrupt config.db", corrupt_config, 5),
    ("empty config.db", empty_config, 5),
    ("used dir without sim_trading.db", account_missing, 5),
    ("empty sim_trading.db", account_empty, 5),
    ("corrupt market.db", market_corrupt, 5),
    ("missing --replay-data folder", replay_folder_missing, 4),
    ("invalid parameter", invalid_config, 2),
    ("holiday file with a bad date", bad_holidays_file, 2),
    ("log dir is a file", log_dir_is_a_file, 5),
    pytest.param("--live without miniQMT", live_without_miniqmt, 4, id="--live without miniQMT",
                 marks=pytest.mark.skipif(os.name == "nt", reason="on Windows --live may find a real miniQMT")),
]


@pytest.mark.parametrize("case, prepare, exit_code", REFUSALS,
                         ids=[r[0] if isinstance(r, tuple) else r.id for r in REFUSALS])
def test_the_doctor_reports_each_start_up_refusal_in_the_daemons_words(tmp_path, case, prepare, exit_code):
    args = ["--simulation", "--set", 'DATA_SOURCE="replay"', *prepare(tmp_path)]
    if "--live" in args:
        args.remove("--simulation")
    words = refusal_words(run(tmp_path, *args), exit_code)
    doctor = run(tmp_path, "--doctor", *args)
    assert doctor.returncode != 0, doctor.stdout + doctor.stderr
    assert "Traceback" not in doctor.stdout + doctor.stderr, doctor.stderr
    assert words in doctor.stdout, f"daemon: {words}\ndoctor:\n{doctor.stdout}"


def test_a_taken_port_is_refused_by_both_in_the_same_words(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["--simulation", "--set", 'DATA_SOURCE="replay"']
        words = refusal_words(run(tmp_path, *args, port=port), 4)
        doctor = run(tmp_path, "--doctor", *args, port=port)
    assert doctor.returncode == 1 and words in doctor.stdout, doctor.stdout


def test_a_damaged_market_db_is_named_in_chinese_without_sqlites_english(tmp_path):
    market_corrupt(tmp_path)
    words = refusal_words(run(tmp_path, "--simulation", "--set", 'DATA_SOURCE="replay"'), 5)
    assert words == storage_health.corrupt_refusal(tmp_path / "data" / "market.db", tmp_path / "data",
                                                   "行情数据库").message
    assert "行情数据库" in words and "market.db" in words and not SQLITE_ENGLISH.search(words)


def test_a_corrupt_config_db_is_refused_in_chinese_without_sqlites_english(tmp_path):
    corrupt_config(tmp_path)
    words = refusal_words(run(tmp_path, "--simulation"), 5)
    assert f"参数数据库 {tmp_path / 'data' / 'config.db'} 已损坏" in words and not SQLITE_ENGLISH.search(words)


def mount_tmpfs(where: Path, size_kb: int) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(where)],
                              capture_output=True)
    except FileNotFoundError:
        return False
    return done.returncode == 0


@pytest.mark.parametrize("free_kb", [12, 48, 160])  # each ran into a different write of the first start
def test_a_start_on_a_full_disk_is_one_disk_full_line(tmp_path, free_kb):
    fs = tmp_path / "fs"
    if not mount_tmpfs(fs, 256):
        pytest.skip("this machine does not let the test mount a small filesystem")
    try:
        with open(fs / "filler", "wb") as filler:
            filler.write(b"\0" * ((256 - free_kb) * 1024))
        data = fs / "data"
        data.mkdir()
        command = [sys.executable, str(PROJECT / "main.py"), "--data-dir", str(data), "--log-dir",
                   str(tmp_path / "logs"), "--port", str(free_port()), "--simulation", "--set", 'DATA_SOURCE="replay"']
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, encoding="utf-8",
                                timeout=120, stdin=subprocess.DEVNULL)
        words = refusal_words(result, 5)
        assert words.startswith("拒绝启动：磁盘已满") and "请清理磁盘空间后重启" in words, words
    finally:
        subprocess.run(["umount", "-l", str(fs)], capture_output=True)


def test_corrupt_databases_found_by_the_daemon_are_named_by_their_own_file(tmp_path):
    """`startup_refusal` (a storage error met while building, file unknown) names the damaged file."""
    data = tmp_path / "data"
    used_data_dir(tmp_path)
    garbage(data / "market.db")
    refused = storage_health.startup_refusal(sqlite3.DatabaseError("file is not a database"), data)
    assert refused.message == storage_health.corrupt_refusal(data / "market.db", data, "行情数据库").message
