"""The xtquant source runs the REAL xtquant/xtdata.py (and xtdatacenter.py, xtconn.py) against a stand-in for the
Windows-only native `xtquant.datacenter`; ticks, pushes, instrument details and bars come through DataManager."""
import threading
import time
from datetime import datetime

import pytest

from market.bar_store import BarStore
from data_manager import DataManager, build_data_manager
from data_test_support import make_settings, no_network, xt_stand_in  # noqa: F401 (fixtures)
from indicator_calculator import IndicatorCalculator
from market.clock import MARKET_TZ, RealClock
from core.models import DataUnavailable, Quote
from market.quote_hub import QuoteHub
from persistence.storage import Database
from market.xtquant_source import XtQuantSource, tick_to_quote

pytestmark = pytest.mark.usefixtures("no_network")

NOW = datetime(2025, 8, 6, 10, 0, 0)  # Wednesday, continuous session


def ms(moment: datetime) -> int:
    return int(moment.replace(tzinfo=MARKET_TZ).timestamp() * 1000)


def tick(price, when=NOW, last_close=13.75, **extra):
    return {"time": ms(when), "lastPrice": price, "open": 13.8, "high": 13.95, "low": 13.7, "lastClose": last_close,
            "amount": 6.9e7, "volume": 50000, "pvolume": 5000000, "stockStatus": 3,
            "askPrice": [13.91, 13.92, 13.93, 13.94, 13.95], "bidPrice": [13.9, 13.89, 13.88, 13.87, 13.86],
            "askVol": [10, 20, 30, 40, 50], "bidVol": [15, 25, 35, 45, 55], **extra}


def bar(day: str, o, h, low, c, lots):
    return {"time": ms(datetime.fromisoformat(day)), "open": o, "high": h, "low": low, "close": c, "volume": lots}


@pytest.fixture
def service(xt_stand_in):
    service = xt_stand_in.reset()
    service.instruments["600000.SH"] = {"ExchangeID": "SH", "InstrumentID": "600000", "InstrumentName": "浦发银行",
                                        "PreClose": 13.75, "UpStopPrice": 15.13, "DownStopPrice": 12.38,
                                        "PriceTick": 0.01}
    service.ticks["600000.SH"] = tick(13.9)
    service.ticks["000001.SZ"] = {"time": ms(NOW), "lastPrice": 12.5, "lastClose": 12.34, "volume": 1000,
                                  "askPrice": [0, 0, 0, 0, 0], "bidPrice": [12.49, 12.48, 0, 0, 0]}
    service.server_bars["600000.SH"] = [
        bar("2025-08-01", 12.82, 12.98, 12.58, 12.92, 793861), bar("2025-08-04", 12.90, 13.45, 12.90, 13.13, 997827),
        bar("2025-08-05", 13.15, 13.78, 13.14, 13.75, 1336466), bar("2025-08-06", 13.80, 13.95, 13.70, 13.90, 50000)]
    service.server_bars["000001.SZ"] = [bar("2025-08-05", 12.30, 12.40, 12.20, 12.34, 800000)]
    yield service
    sys_xtdata().disconnect()
    xt_stand_in.reset()


def make_manager(tmp_path, **overrides):
    """A started DataManager on the stand-in xtquant, watching two stocks; `manager.moment["now"]` sets its clock."""
    moment = {"now": NOW}
    clock = RealClock(source=lambda: moment["now"].replace(tzinfo=MARKET_TZ))
    settings = make_settings(tmp_path, **overrides)
    bar_store = BarStore(Database(tmp_path / "market.db"))
    indicators = IndicatorCalculator(bar_store)
    bar_store.subscribe(indicators.update)
    manager = DataManager(settings, clock, QuoteHub(settings, clock), bar_store,
                          XtQuantSource(settings, clock, bar_store), indicators)
    manager.start()
    manager.set_watchlist(["600000", "000001.SZ"])
    manager.moment = moment
    return manager


@pytest.fixture
def manager(tmp_path, service):
    manager = make_manager(tmp_path)
    yield manager
    manager.close()


def test_ticks_and_bars_through_the_project_interface(manager, service):
    assert manager.run_once() == 3.0  # MONITOR_INTERVAL until the next poll
    assert manager.get_latest_data("600000.SH") == Quote(
        code="600000.SH", price=13.9, prev_close=13.75, time=NOW, source="xtquant", limit_up=15.13, limit_down=12.38,
        open=13.8, high=13.95, low=13.7, volume=5000000.0, bid1=13.9, ask1=13.91, name="浦发银行")
    other = manager.get_latest_data("000001.SZ")
    # no instrument detail: limits from the tick's last close; volume from lots; an empty ask book is no price
    assert (other.price, other.limit_down, other.limit_up, other.volume, other.bid1, other.ask1, other.name) == (
        12.5, 11.11, 13.57, 100000.0, 12.49, None, "")
    history = manager.get_history("600000.SH")
    assert history.values.tolist() == [  # today's unfinished bar is not stored; lots became shares
        [datetime(2025, 8, 1).date(), 12.82, 12.98, 12.58, 12.92, 79386100.0],
        [datetime(2025, 8, 4).date(), 12.90, 13.45, 12.90, 13.13, 99782700.0],
        [datetime(2025, 8, 5).date(), 13.15, 13.78, 13.14, 13.75, 133646600.0]]
    calls = service.calls
    download = calls.index(("supply_history_data", "600000.SH", "1d", "20240727", ""))  # HISTORY_DAYS × 1.5
    read = next(i for i, c in enumerate(calls) if c[0] == "get_market_data3" and c[1] == ("600000.SH",))
    assert download < read and calls[read][6:] == ("front", "v4")
    manager.set_watchlist(["600000.SH", "000001.SZ"])  # unchanged list: no re-subscription, no re-download
    assert [c for c in calls if c[0] == "subscribe_whole_quote"] == [("subscribe_whole_quote", ("600000.SH", "000001.SZ"))]
    assert {c[1] for c in calls if c[0] == "connect"} == {"127.0.0.1:58610"}
    assert manager.status()["connected"] is True and manager.status()["source"] == "xtquant"
    xtdata = sys_xtdata()  # the real module from the installed wheel ran, not a fake
    assert xtdata.__file__.replace("\\", "/").endswith("site-packages/xtquant/xtdata.py") and xtdata.enable_hello is False


def test_next_update_fetches_only_new_bars(manager, service):
    manager.run_once()
    service.server_bars["600000.SH"][-1] = bar("2025-08-06", 13.80, 14.10, 13.70, 14.02, 1200000)
    manager.moment["now"] = datetime(2025, 8, 6, 15, 5)  # after the close: today's bar is complete
    assert manager.run_once() == 60.0  # outside sessions the source idles for UPDATE_INTERVAL
    starts = [c[3] for c in service.calls if c[0] == "supply_history_data" and c[1] == "600000.SH"]
    assert starts == ["20240727", "20250805"]  # the second download starts at the last stored day
    assert manager.get_history("600000.SH").values.tolist()[-1][1:] == [13.80, 14.10, 13.70, 14.02, 120000000.0]


def test_forward_adjustment_change_reloads_the_history(manager, service):
    manager.run_once()
    service.server_bars["600000.SH"] = [dict(b, close=round(b["close"] * 0.9, 2), low=round(b["low"] * 0.9, 2))
                                        for b in service.server_bars["600000.SH"]]  # an ex-right day re-adjusts
    service.local_bars.clear()
    manager.moment["now"] = datetime(2025, 8, 6, 10, 1, 1)  # UPDATE_INTERVAL (60 s) later
    manager.run_once()
    assert manager.get_history("600000.SH")["close"].tolist() == [round(c * 0.9, 2) for c in (12.92, 13.13, 13.75)]


def test_pushed_tick_reaches_subscribers_from_the_push_thread(manager, service):
    manager.run_once()
    seen = []
    manager.hub.subscribe(lambda q: seen.append((q.code, q.price, threading.current_thread().name)))
    version = manager.hub.version
    assert service.push("600000.SH", tick(13.95, when=datetime(2025, 8, 6, 10, 0, 1))) == 1
    assert manager.hub.wait_for_update(version, timeout=5) == version + 1
    assert seen == [("600000.SH", 13.95, "fake-xtdata-push")]
    assert manager.get_latest_data("600000.SH").price == 13.95


def test_zero_and_stale_ticks_never_reach_the_rules(manager, service):
    manager.run_once()
    seen = []
    manager.hub.subscribe(seen.append)
    version = manager.hub.version
    service.push("600000.SH", tick(0.0, when=datetime(2025, 8, 6, 10, 0, 1)))  # pre-open style zero price
    service.push("600000.SH", tick(13.5, when=datetime(2025, 8, 6, 9, 59, 0)))  # 60 s old
    service.push("000001.SZ", dict(service.ticks["000001.SZ"], lastPrice=12.51))  # a good one, pushed last
    assert manager.hub.wait_for_update(version, timeout=5) == version + 1  # pushes are handled in order
    assert [(q.code, q.price) for q in seen] == [("000001.SZ", 12.51)]
    assert manager.get_latest_data("600000.SH").price == 13.9  # still the last good price
    assert "行情过期：600000.SH" in manager.hub.last_error
    manager.run_once()  # the poll now returns the stale 09:59 tick: refused again; push errors surface
    errors = manager.status()["recent_errors"]
    assert any("miniQMT 行情 600000.SH 的现价无效（0.0），未采用" in e for e in errors)
    assert any("行情过期：600000.SH" in e for e in errors)


def test_lost_service_is_reported_then_reconnected(manager, service):
    manager.run_once()
    service.running = False
    manager.run_once()
    status = manager.status()
    assert status["connected"] is False and "miniQMT 行情服务异常" in status["last_error"]
    service.running = True
    service.ticks["600000.SH"] = tick(14.0, when=datetime(2025, 8, 6, 10, 0, 2))
    manager.moment["now"] = datetime(2025, 8, 6, 10, 0, 2)
    manager.run_once()
    assert manager.status()["connected"] is True
    assert manager.get_latest_data("600000.SH").price == 14.0


def test_auto_uses_xtquant_when_it_connects_and_falls_back_when_not(tmp_path, service):
    manager, clock = build_data_manager(make_settings(tmp_path / "a"), tmp_path / "a")
    assert manager.source_name == "xtquant" and isinstance(clock, RealClock)
    manager.close()
    sys_xtdata().disconnect()
    service.running = False
    manager, clock = build_data_manager(make_settings(tmp_path / "b"), tmp_path / "b")
    assert manager.source_name == "synthetic" and "演示行情" in manager.source_label


def test_explicit_xtquant_stays_and_reports_when_down(tmp_path, service):
    service.running = False
    manager, _ = build_data_manager(make_settings(tmp_path, DATA_SOURCE="xtquant"), tmp_path)
    status = manager.status()
    assert status["source"] == "xtquant" and status["connected"] is False
    assert "无法连接 miniQMT 行情服务" in status["last_error"]


def sys_xtdata():
    import sys

    return sys.modules["xtquant.xtdata"]


def test_empty_bar_frame_is_reported(manager, service):
    del service.server_bars["000001.SZ"]
    manager.run_once()
    assert any("miniQMT 没有返回 000001.SZ 自 2024-07-27 起的日线" in e for e in manager.status()["recent_errors"])
    assert manager.get_history("000001.SZ").empty


@pytest.mark.parametrize("changes, fragment", [
    ({"lastPrice": 0}, "现价无效（0）"),
    ({"lastPrice": float("nan")}, "现价无效（nan）"),
    ({"lastPrice": None}, "现价无效（None）"),
    ({"lastClose": 0}, None),  # falls back to the instrument's PreClose
    ({"time": 0}, "缺少时间"),
])
def test_tick_validation(changes, fragment):
    detail = {"InstrumentName": "浦发银行", "PreClose": 13.75, "UpStopPrice": 15.13, "DownStopPrice": 12.38}
    if fragment is None:
        assert tick_to_quote("600000.SH", tick(13.9, **changes), detail, "xtquant").prev_close == 13.75
        with pytest.raises(DataUnavailable, match="缺少昨收价"):
            tick_to_quote("600000.SH", tick(13.9, **changes), None, "xtquant")
        return
    with pytest.raises(DataUnavailable, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        tick_to_quote("600000.SH", tick(13.9, **changes), detail, "xtquant")


def test_broker_calendar_extends_the_market_calendar(tmp_path, service):
    """Past exchange_calendars' table a live session uses miniQMT's calendar instead of guessing weekdays."""
    from datetime import date

    from market_rules import TradingCalendar

    calendar = TradingCalendar()
    calendar._load()
    last = calendar._last
    known = [last.replace(day=d) for d in range(last.day - 3, last.day + 1) if calendar.is_trading_day(last.replace(day=d))]
    # xtdata turns these into dates with the machine's local time zone (China time on a QMT machine)
    service.trading_days_ms = [int(datetime.combine(d, datetime.min.time()).timestamp() * 1000) for d in known]
    new_year = date(last.year + 1, 1, 1)
    first_monday = next(date(last.year + 1, 1, d) for d in range(1, 8) if date(last.year + 1, 1, d).weekday() == 0)
    service.holidays = [int(new_year.strftime("%Y%m%d")), int(first_monday.strftime("%Y%m%d")), (last.year + 1) * 10000 + 1231]
    clock = RealClock(calendar, source=lambda: datetime.combine(known[-1], datetime.min.time()).replace(
        hour=10, tzinfo=MARKET_TZ))
    settings = make_settings(tmp_path)
    bar_store = BarStore(Database(tmp_path / "market.db"))
    source = XtQuantSource(settings, clock, bar_store)
    manager = DataManager(settings, clock, QuoteHub(settings, clock), bar_store, source, IndicatorCalculator(bar_store))
    manager.start()
    try:
        assert calendar.is_trading_day(new_year) is False  # a holiday from miniQMT's table
        assert calendar.is_trading_day(first_monday) is False  # a weekday holiday: weekdays alone would say open
        after = date.fromordinal(first_monday.toordinal() + 1)
        assert calendar.is_trading_day(after) is True
        assert calendar.fallback_warning == ""
    finally:
        manager.close()


# ---- issue 13: a restart of miniQMT between polls; the download_history_data2 path ---------------------------------
def test_push_subscription_lost_in_a_restart_between_polls_is_renewed(manager, service):
    manager.run_once()
    assert len(service.subscriptions) == 1
    service.restart()  # xtdata's get_client() reconnects silently on the next poll; the subscription is gone
    assert service.push("600000.SH", tick(13.91, when=datetime(2025, 8, 6, 10, 0, 1))) == 0
    manager.run_once()
    assert len(service.subscriptions) == 1  # noticed (the client changed) and subscribed again
    version = manager.hub.version
    assert service.push("600000.SH", tick(13.96, when=datetime(2025, 8, 6, 10, 0, 2))) == 1
    assert manager.hub.wait_for_update(version, timeout=5) == version + 1
    assert manager.get_latest_data("600000.SH").price == 13.96


def test_silent_push_with_newer_polled_prices_renews_the_subscription(tmp_path, service):
    manager = make_manager(tmp_path, PUSH_SILENCE_SECONDS=0.1)
    manager.run_once()
    service.subscriptions.clear()  # the service forgot us without saying so (same client)
    service.ticks["600000.SH"] = tick(13.97, when=datetime(2025, 8, 6, 10, 0, 3))
    manager.moment["now"] = datetime(2025, 8, 6, 10, 0, 3)
    deadline = time.monotonic() + 5
    while not service.subscriptions and time.monotonic() < deadline:
        manager.run_once()  # each poll checks; after 0.1 s of silence with newer polled prices: resubscribe
        manager.moment["now"] = datetime(2025, 8, 6, 10, 0, 3)
    assert len(service.subscriptions) == 1
    manager.close()


def test_download_history_data2_has_a_deadline_and_one_failed_code_does_not_skip_the_others(tmp_path, service):
    service.download_version = 1  # real xtdata now takes the download_history_data2 path, which waits for ever
    service.download_hang = {"600000.SH"}
    manager = make_manager(tmp_path, DOWNLOAD_DEADLINE=0.5)
    step = threading.Thread(target=manager.run_once, daemon=True)
    step.start()
    step.join(10)
    assert not step.is_alive(), "the data thread hung in download_history_data2"
    assert [c[0] for c in service.calls].count("supply_history_data2") == 2
    errors = manager.status()["recent_errors"]
    assert any("下载 600000.SH 日线失败：下载 600000.SH 日线超时（0.5 秒）" in e for e in errors)
    assert manager.get_history("000001.SZ")["close"].tolist() == [12.34]  # the next code was still loaded
    service.download_hang = set()
    service.download_fail = {"000001.SZ": "无此品种数据"}
    manager.moment["now"] = datetime(2025, 8, 6, 15, 30)
    manager._source._next_bar_update = None  # the next bar update now
    manager.run_once()
    assert manager.get_history("600000.SH")["close"].tolist()[-1] == 13.90
    assert any("下载数据失败：无此品种数据" in e for e in manager.status()["recent_errors"])
    manager.close()


def test_a_stock_that_never_ticks_does_not_renew_the_subscription(tmp_path, service):
    manager = make_manager(tmp_path, PUSH_SILENCE_SECONDS=0.1)
    manager.run_once()
    [seq] = service.subscriptions
    started = time.monotonic()
    while time.monotonic() - started < 0.5:  # silent pushes, but the polled tick never moves (suspended)
        manager.run_once()
    assert list(service.subscriptions) == [seq]
    manager.close()
