"""The built daemon with an events file (issue 28 §2): the keeper is wired (the position table's day roll, the
quote hub, GET /api/ex_rights); a bad events file refuses the start naming the line; without a source the
route answers that none is configured."""
from __future__ import annotations

import json
import urllib.request
from datetime import date

import pytest

from daemon_support import free_port


def build(tmp_path, **overrides):
    from daemon.composition import build_daemon
    from logger import SecretFilter
    from persistence.config_store import ConfigStore
    from persistence.storage import Database

    port = free_port()
    settings = ConfigStore(Database(tmp_path / "config.db"), run_overrides={"DATA_SOURCE": "replay", "WEB_PORT": port,
                                                                          **overrides})
    (tmp_path / "pool.json").write_text("[]", encoding="utf-8")
    return build_daemon(settings, tmp_path / "data", tmp_path / "logs", SecretFilter(), tmp_path / "pool.json"), port


def get(port: int, path: str) -> dict:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return json.loads(response.read().decode("utf-8"))["data"]


def test_the_route_lists_the_journal_of_a_daemon_with_an_events_file(tmp_path):
    events = tmp_path / "events.csv"
    events.write_text("code,ex_date,cash_per_share,shares_per_share,factor\n600000.SH,2020-07-23,0.59,0,0.948371468\n",
                      encoding="utf-8")
    daemon, port = build(tmp_path, EX_RIGHTS_EVENTS_FILE=str(events))
    try:
        keeper = daemon.components["web"].ctx.ex_rights
        assert daemon.components["positions"]._ex_rights_source == keeper.source_for_positions
        assert keeper.on_quote in daemon.components["web"].ctx.data.hub._first_listeners  # before every rule
        assert get(port, "/api/ex_rights") == {"available": True, "events": []}
        [event] = keeper._source.events(["600000.SH"], None, date(2020, 7, 23))
        keeper.apply(event)  # not held: journaled with nothing to adjust
        [row] = get(port, "/api/ex_rights")["events"]
        assert (row["stock_code"], row["ex_date"], row["description"], row["status_label"]) == (
            "600000.SH", "2020-07-23", "每10股派5.9元", "已调整")
        assert row["message"] == "除权除息 600000.SH 2020-07-23（每10股派5.9元）：因子 0.948371，没有需要调整的价位"
    finally:
        daemon.shutdown()


def test_without_a_source_the_route_says_so(tmp_path):
    daemon, port = build(tmp_path)
    try:
        assert get(port, "/api/ex_rights") == {"available": False, "events": []}
    finally:
        daemon.shutdown()


def test_a_bad_events_file_refuses_the_start_with_its_line(tmp_path):
    from core.models import TradingError

    events = tmp_path / "events.csv"
    events.write_text("code,ex_date,cash_per_share,shares_per_share\n600000.SH,2020/07/23,0.59,0\n", encoding="utf-8")
    with pytest.raises(TradingError) as refused:
        build(tmp_path, EX_RIGHTS_EVENTS_FILE=str(events))
    assert refused.value.code == "EX_RIGHTS_FILE_BAD"
    assert "第2行：除权除息日无效" in refused.value.message
