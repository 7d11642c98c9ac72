"""Observed events: stale quotes during a session (once per episode), signals waiting for a person while
automatic trading is off (once per signal), the daily loss limit (once per day) and other refusals."""
from __future__ import annotations

from datetime import datetime, timedelta

from core.events import EventBus, EventKind
from market.clock import ReplayClock
from core.models import Quote, Rule, Signal, SignalStatus
from notify.watch import NotifyWatch
from core.signal_store import SignalStore
from persistence.storage import Database
from trading_support import make_settings


class Hub:
    """The quote hub's two reads the watch uses; the feed's clock is the market clock here (no skew)."""

    def __init__(self, clock=None):
        self.quotes = {}
        self.clock = clock

    def last_seen(self, code):
        return self.quotes.get(code)

    def feed_now(self, source=None):
        return self.clock.now()


def test_watch_publishes_each_condition_once(tmp_path):
    clock = ReplayClock(datetime(2024, 3, 5, 10, 0))
    bus = EventBus(clock)
    seen = bus.subscribe()
    settings = make_settings(tmp_path, QUOTE_STALE_SECONDS=30.0, ENABLE_AUTO_TRADING=False)
    hub = Hub(clock)
    signals = SignalStore(Database(tmp_path / "t.db"), clock)
    watch = NotifyWatch(bus, clock, settings, hub, signals, lambda: ["600036.SH", "000001.SZ"], lambda: True)
    for code in ("600036.SH", "000001.SZ"):
        hub.quotes[code] = Quote(code=code, price=10.0, prev_close=10.0, time=clock.now(), source="t")
    watch.check()
    assert seen.drain() == []
    clock.advance(31)
    hub.quotes["000001.SZ"] = Quote(code="000001.SZ", price=10.0, prev_close=10.0, time=clock.now(), source="t")
    watch.check()
    watch.check()
    stale = seen.drain()
    assert [(e.kind, e.data["codes"]) for e in stale] == [(EventKind.QUOTES_STALE, ["600036.SH"])]
    assert stale[0].message == "交易时段内行情超过 30 秒未更新：600036.SH"

    waiting = signals.add(Signal("600036.SH", Rule.STOP_LOSS, 1000, 9.05, 9.0, clock.now()))
    watch.check_signals()
    watch.check_signals()
    events = seen.drain()
    assert [(e.kind, e.data["signal_id"]) for e in events] == [(EventKind.SIGNAL_WAITING, waiting.id)]
    assert events[0].message.startswith("600036.SH 止损（卖出）信号等待人工处理，触发价 9.05")

    for _ in range(2):  # two buys refused by the loss limit on one day: one event
        buy = signals.add(Signal("000001.SZ", Rule.MACD_BUY, 100, 10.0, 10.0, clock.now()))
        signals.mark(buy.id, SignalStatus.REJECTED, "今日亏损 60000.00 元，已达开盘总资产的 5.0%，停止自动买入")
    other = signals.add(Signal("600519.SH", Rule.MACD_BUY, 100, 10.0, 10.0, clock.now() + timedelta(seconds=1)))
    signals.mark(other.id, SignalStatus.REJECTED, "可用资金不足")
    watch.check_signals()
    assert [(e.kind, e.stock_code) for e in seen.drain()] == [(EventKind.DAILY_LOSS_LIMIT, "000001.SZ"),
                                                              (EventKind.ORDER_REJECTED, "600519.SH")]


def test_refused_and_unknown_orders_are_told_once_and_old_refusals_not_again(tmp_path):
    clock = ReplayClock(datetime(2024, 3, 5, 10, 0))
    bus = EventBus(clock)
    seen = bus.subscribe()
    book = {"rejected": [{"client_id": "c1", "stock_code": "600036.SH", "side": "buy", "volume": 100, "price": 10.0,
                          "reason": "资金不足"}], "unknown": []}
    asked = []

    def orders(status, day):
        asked.append((status, day))
        return list(book[status])

    watch = NotifyWatch(bus, clock, make_settings(tmp_path), Hub(clock), SignalStore(Database(tmp_path / "t.db"), clock),
                        lambda: [], lambda: True, orders)
    book["rejected"].append({"client_id": "c2", "stock_code": "000001.SZ", "side": "sell", "volume": 200,
                             "price": 9.5, "reason": "57 废单"})
    book["rejected"].append({"client_id": "c4", "stock_code": "000001.SZ", "side": "sell", "volume": 100,
                             "price": 9.5, "reason": "未送达券商：miniQMT 未连接（可能正在重连），请稍后再试"})
    book["unknown"].append({"client_id": "c3", "stock_code": "600519.SH", "side": "sell", "volume": 100,
                            "price": 1500.0, "reason": ""})
    watch.check_orders()
    watch.check_orders()
    assert [(e.kind, e.message) for e in seen.drain()] == [
        (EventKind.ORDER_REJECTED, "000001.SZ 卖出 200 股 @ 9.5 委托被拒：57 废单（委托 c2）"),
        (EventKind.ORDER_FAILED, "000001.SZ 卖出 100 股 @ 9.5 委托失败：未送达券商：miniQMT 未连接（可能正在重连），"
                                 "请稍后再试（委托 c4）"),
        (EventKind.ORDER_UNKNOWN, "600519.SH 卖出 100 股 @ 1500 委托状态未知，请在券商端核对（委托 c3）")]
    assert set(asked) == {("rejected", clock.today()), ("unknown", clock.today())}
