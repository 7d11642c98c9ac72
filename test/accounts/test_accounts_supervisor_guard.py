"""Issue 26 item 9: an account without its own `stock_pool` starts from the shipped pool, as a single daemon's
data dir does; a second supervisor on the same accounts file is refused even with another `--data-dir` (it
would run every account twice). The first supervisor is the real one (accounts.entry.run), its children tiny
stand-in processes."""
from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path

import pytest

import accounts.entry as accounts_main
from daemon_support import free_port, wait_until
from core.stock_pool import StockPool

SHIPPED = Path(__file__).resolve().parents[2] / "stock_pool.json"
STAND_IN = [sys.executable, "-c", "import time; time.sleep(60)"]


def args_for(tmp_path: Path, accounts: Path, name: str) -> argparse.Namespace:
    return argparse.Namespace(accounts=str(accounts), data_dir=str(tmp_path / name), log_dir=str(tmp_path / f"{name}_logs"))


@pytest.fixture
def first_supervisor(tmp_path, monkeypatch):
    monkeypatch.chdir(SHIPPED.parent)  # the shipped pool of the working directory, as for a single daemon
    accounts = tmp_path / "accounts.json"
    accounts.write_text(json.dumps({"accounts": [
        {"id": "sim1", "name": "模拟一"},
        {"id": "sim2", "name": "模拟二", "stock_pool": ["600036.SH"]}]}, ensure_ascii=False), encoding="utf-8")
    stops: list[threading.Event] = []
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(accounts_main.run(
        args_for(tmp_path, accounts, "first"), {"WEB_PORT": free_port()}, stops.append,
        command_for=lambda launch: STAND_IN)))
    thread.start()
    try:
        first = tmp_path / "first" / "accounts"
        wait_until(lambda: (first / "sim1" / "stock_pool.json").exists() and (first / "sim2" / "stock_pool.json").exists(),
                   30, "the first supervisor to prepare its accounts")
        yield accounts, first
    finally:
        wait_until(lambda: stops, 30, "the supervisor's stop event")
        stops[0].set()
        thread.join(60)
    assert result == [0]


def test_account_without_a_pool_gets_the_shipped_one(first_supervisor):
    _, first = first_supervisor
    assert StockPool(first / "sim1" / "stock_pool.json").codes() == StockPool(SHIPPED).codes() != []
    assert StockPool(first / "sim2" / "stock_pool.json").codes() == ["600036.SH"]


def test_second_supervisor_on_the_same_accounts_is_refused(first_supervisor, tmp_path, capsys):
    accounts, _ = first_supervisor
    # were it not refused, it would stop again at its first poll (its stop event is set at once)
    code = accounts_main.run(args_for(tmp_path, accounts, "second"), {"WEB_PORT": free_port()},
                             lambda event: event.set(), command_for=lambda launch: STAND_IN)
    assert code == 3
    assert (f"拒绝启动：账户文件 {accounts.resolve()} 中的账户已由另一个多账户监管进程运行（锁文件 accounts.json.lock）；"
            "同一组账户不能同时运行两份，即使数据目录不同") in capsys.readouterr().err
    assert not (tmp_path / "second" / "accounts").exists()
