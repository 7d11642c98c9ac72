"""mootdx: the real TDX .day files read in place through the offline Reader; online quotes only from the
configured server (never the public-server probe), with ~/.mootdx kept out of the real home."""
import gc
import json
import socket
import time
from datetime import date, datetime
from pathlib import Path

import pytest

from market.bar_store import BarStore
from data_manager import DataManager, build_data_manager
from data_test_support import isolated_home, make_settings, no_network, shared_data  # noqa: F401 (fixtures)
from indicator_calculator import IndicatorCalculator
from market.clock import MARKET_TZ, RealClock
from core.models import DataUnavailable
from market.mootdx_source import MootdxSource, parse_server, row_to_quote
from market.quote_hub import QuoteHub
from persistence.storage import Database

pytestmark = pytest.mark.usefixtures("no_network", "isolated_home")

def manager_for(tmp_path, now: datetime, **overrides):
    clock = RealClock(source=lambda: now.replace(tzinfo=MARKET_TZ))
    settings = make_settings(tmp_path, DATA_SOURCE="mootdx", **overrides)
    db = Database(tmp_path / "market.db")
    bar_store = BarStore(db)
    indicators = IndicatorCalculator(bar_store)
    bar_store.subscribe(indicators.update)
    source = MootdxSource(settings, clock, bar_store, tmp_path / "data")
    return DataManager(settings, clock, QuoteHub(settings, clock), bar_store, source, indicators)


def test_offline_reader_reads_the_real_day_files_in_place(tmp_path):
    tdx = shared_data("tdx")
    manager = manager_for(tmp_path, datetime(2025, 8, 6, 10, 0), TDX_DIR=str(tdx))
    manager.start()
    manager.set_watchlist(["600000.SH"])
    manager.run_once()
    history = manager.get_history("600000.SH", start=date(2025, 8, 1))
    # sh600000.day: unadjusted prices; mootdx reports lots, stored as shares
    assert history.values.tolist() == [
        [date(2025, 8, 1), 12.82, 12.98, 12.58, 12.92, 79386104.0],
        [date(2025, 8, 4), 12.90, 13.45, 12.90, 13.13, 99782728.0],
        [date(2025, 8, 5), 13.15, 13.78, 13.14, 13.75, 133646594.0]]
    assert manager.get_history("600000.SH").iloc[0]["date"] == date(1999, 11, 10)
    assert any("没有实时行情" in e for e in manager.status()["recent_errors"])  # no MOOTDX_SERVER: bars only
    assert manager.get_latest_data("600000.SH") is None


def test_offline_update_only_adds_bars_after_the_stored_ones(tmp_path):
    tdx = shared_data("tdx")
    manager = manager_for(tmp_path, datetime(2025, 8, 6, 10, 0), TDX_DIR=str(tdx))
    manager.start()
    manager.set_watchlist(["000001.SZ"])
    manager.run_once()
    # sz000001.day runs to 2026-05-27, but on 2025-08-06 10:00 only bars up to 2025-08-05 are complete
    assert manager.get_history("000001.SZ")["date"].iloc[-1] == date(2025, 8, 5)


# mootdx's half-built StdQuotes raises from __del__ when its connection failed; collected inside this test
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_online_quotes_only_from_the_configured_server_with_a_short_timeout(tmp_path, isolated_home):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # accepts, never answers: the client must give up after MOOTDX_TIMEOUT
    port = listener.getsockname()[1]
    try:
        manager = manager_for(tmp_path, datetime(2025, 8, 6, 10, 0), MOOTDX_SERVER=f"127.0.0.1:{port}",
                              MOOTDX_TIMEOUT=0.5)
        started = time.monotonic()
        with pytest.raises(DataUnavailable) as error:
            manager.start()
        assert time.monotonic() - started < 5
        message = error.value.message
    finally:
        listener.close()
        del error  # its traceback holds the half-built mootdx client; collect it here, under the filter
        gc.collect()
    assert f"无法连接 mootdx 行情服务器 127.0.0.1:{port}" in message
    assert f"127.0.0.1:{port}" in manager.status()["last_error"]
    manager.run_once()  # the data thread keeps trying the configured server (now closed: refused at once)
    assert manager.status()["connected"] is False and f"127.0.0.1:{port}" in manager.status()["last_error"]
    # mootdx read our config (naming only that server) instead of probing public servers for a missing one
    config = json.loads((tmp_path / "data" / "mootdx_config.json").read_text(encoding="utf-8"))
    assert config["BESTIP"]["HQ"] == ["127.0.0.1", port]
    import mootdx.config

    assert Path(mootdx.config.CONF) == tmp_path / "data" / "mootdx_config.json"
    assert not (isolated_home / ".mootdx" / "config.json").exists()


def test_auto_without_server_does_not_use_mootdx(tmp_path):
    manager, _ = build_data_manager(make_settings(tmp_path, TDX_DIR="/nonexistent"), tmp_path)
    assert manager.source_name == "synthetic"


def test_explicit_mootdx_without_configuration_is_reported(tmp_path):
    manager, _ = build_data_manager(make_settings(tmp_path, DATA_SOURCE="mootdx"), tmp_path)
    assert manager.source_name == "mootdx" and manager.status()["connected"] is False
    assert "TDX_DIR" in manager.status()["last_error"] and "MOOTDX_SERVER" in manager.status()["last_error"]


def test_quote_row_conversion():
    row = {"market": 1, "code": "600000", "price": 13.780000000000001, "last_close": 13.13, "open": 13.15,
           "high": 13.780000000000001, "low": 13.14, "vol": 1336466, "bid1": 13.77, "ask1": 13.780000000000001}
    quote = row_to_quote("600000.SH", row, datetime(2025, 8, 5, 14, 0), "mootdx")
    assert (quote.price, quote.prev_close, quote.high, quote.ask1, quote.bid1) == (13.78, 13.13, 13.78, 13.78, 13.77)
    assert (quote.limit_down, quote.limit_up, quote.volume) == (11.82, 14.44, 133646600.0)
    assert quote.time == datetime(2025, 8, 5, 14, 0)
    with pytest.raises(DataUnavailable, match="现价无效"):
        row_to_quote("600000.SH", dict(row, price=0.0), datetime(2025, 8, 5, 14, 0), "mootdx")


@pytest.mark.parametrize("text", ["tdx.example.com:7709", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:abc"])
def test_server_must_be_ip_and_port(text):
    with pytest.raises(ValueError, match="MOOTDX_SERVER 格式错误"):
        parse_server(text)
    assert parse_server("127.0.0.1:7709") == ("127.0.0.1", 7709)


# ---- issue 13: a dead quotes client is replaced; ST stocks get their ±5 % limits -----------------------------------
class StubTdxClient:
    """A mootdx StdQuotes stand-in: `quotes()` fails once the connection is `dead` (as tdxpy does)."""

    def __init__(self, names: dict[int, list[dict]]):
        import pandas

        self.dead = False
        self.closed = False
        self._pandas = pandas
        self._names = names

    def quotes(self, symbol):
        if self.dead:
            raise ConnectionResetError("connection reset by peer")
        rows = [{"market": 0, "code": "000004", "price": 9.6, "last_close": 10.0, "open": 10.0, "high": 10.0,
                 "low": 9.5, "vol": 1000, "bid1": 9.59, "ask1": 9.6}]
        return self._pandas.DataFrame([r for r in rows if r["code"] in symbol])

    def stocks(self, market):
        return self._pandas.DataFrame(self._names.get(market, []))

    def close(self):
        self.closed = True


def test_dead_quotes_client_is_replaced_and_st_names_give_five_percent_limits(tmp_path, monkeypatch):
    import market.mootdx_source as mootdx_source

    opened: list[StubTdxClient] = []

    def fake_open(server, timeout, config_dir):
        opened.append(StubTdxClient({0: [{"code": "000004", "name": "*ST国华"}]}))
        return opened[-1]

    monkeypatch.setattr(mootdx_source, "open_quotes", fake_open)
    manager = manager_for(tmp_path, datetime(2025, 8, 6, 10, 0), MOOTDX_SERVER="127.0.0.1:7709")
    manager.start()
    manager.set_watchlist(["000004.SZ"])
    manager.run_once()
    quote = manager.get_latest_data("000004.SZ")
    assert (quote.limit_down, quote.limit_up, quote.name) == (9.5, 10.5, "*ST国华")  # ST: ±5 %, not ±10 %
    opened[0].dead = True
    manager.run_once()  # the failure drops the dead client ...
    assert opened[0].closed and manager.status()["connected"] is False
    manager.run_once()  # ... and the next step connects again
    assert len(opened) == 2 and manager.status()["connected"] is True


def test_st_flag_from_the_quote_name_sets_the_order_price_floor():
    from core.order_checks import limits
    from core.models import Quote

    quote = Quote("600001.SH", 9.6, 10.0, datetime(2025, 8, 6, 10, 0), "test", name="ST邯钢")
    assert limits(quote) == (9.5, 10.5)


@pytest.mark.parametrize("received, limits", [(datetime(2026, 7, 3, 10, 0), (9.5, 10.5)),
                                              (datetime(2026, 12, 8, 10, 0), (9.0, 11.0))])
def test_st_quote_limits_follow_the_day_it_was_received(received, limits):
    """Issue 33: the mootdx path takes ST from the name; from 2026-07-06 the main-board ST band is ±10 %."""
    row = {"market": 0, "code": "000004", "price": 9.4, "last_close": 10.0, "open": 10.0, "high": 10.0,
           "low": 9.4, "vol": 1000, "bid1": 9.39, "ask1": 9.4}
    quote = row_to_quote("000004.SZ", row, received, "mootdx", name="*ST国华")
    assert (quote.limit_down, quote.limit_up) == limits
