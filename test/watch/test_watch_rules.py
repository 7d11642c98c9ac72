"""Issue 17: every watch condition fires at the exact tick of a scripted quote sequence and not one tick before;
cooldown, fire-once, expiry and sessions; task states survive a restart; invalid bodies are refused in Chinese."""
from __future__ import annotations

from datetime import date, datetime

import pytest

import watch.requests as requests_
import watch.rules as rules
from core.events import EventBus, EventKind
from market.clock import ReplayClock
from core.models import Quote
from market.quote_hub import QuoteHub
from core.signal_store import SignalStore
from persistence.storage import Database
from trading_support import make_settings
from watch.monitor import WatchMonitor
from watch.requests import InvalidTask
from watch.rules import DailyContext, TaskStatus
from watch.store import WatchStore

SH = "600036.SH"
TODAY = date(2025, 9, 29)
DAILY = DailyContext(highs=(10.2, 10.6, 10.4), lows=(9.5, 9.3, 9.6),
                     volumes=(20000.0, 22000.0, 26000.0, 24000.0, 28000.0), macd_cross=None)


class Rig:
    """Real hub, store, signal queue and bus on SQLite files; the monitor driven pass by pass."""

    def __init__(self, tmp_path, daily: DailyContext = DAILY, start: str = "2025-09-29T10:30"):
        self.settings = make_settings(tmp_path)
        self.clock = ReplayClock(datetime.fromisoformat(start))
        self.hub = QuoteHub(self.settings, self.clock)
        self.db = Database(tmp_path / "sim_trading.db")
        self.store = WatchStore(self.db, self.clock)
        self.signals = SignalStore(self.db, self.clock)
        self.events = EventBus(self.clock)
        self.alerts = self.events.subscribe([EventKind.WATCH_ALERT])
        self.daily = daily
        self.monitor = self.new_monitor()

    def new_monitor(self) -> WatchMonitor:
        return WatchMonitor(self.store, self.hub, self.signals, positions=None, events=self.events,
                            settings=self.settings, clock=self.clock, daily=lambda code, day: self.daily)

    def add(self, conditions, **options) -> int:
        body = {"stock_code": SH, "conditions": conditions, **options}
        return self.store.add(requests_.parse_task(body, self.clock.today())).id

    def tick(self, price: float, prev_close: float = 10.0, volume: float | None = None, seconds: float = 3) -> list:
        self.clock.advance(seconds)
        self.hub.publish(Quote(code=SH, price=price, prev_close=prev_close, time=self.clock.now(), source="test",
                               volume=volume))
        return self.monitor.run_once()


CASES = [  # (condition, scripted prices, index of the first tick that must fire)
    ({"type": "price_above", "value": 10.5}, [10.47, 10.48, 10.49, 10.50, 10.51], 3),
    ({"type": "price_below", "value": 9.8}, [9.83, 9.82, 9.81, 9.80], 3),
    ({"type": "change_above", "value": 5}, [10.48, 10.49, 10.50], 2),
    ({"type": "change_below", "value": -3}, [9.72, 9.71, 9.70], 2),
    ({"type": "near_limit_up", "value": 2}, [10.76, 10.77, 10.78], 2),  # limit 11.00 × 0.98 = 10.78
    ({"type": "near_limit_down", "value": 2}, [9.20, 9.19, 9.18], 2),  # limit 9.00 × 1.02 = 9.18
    ({"type": "new_high", "days": 3}, [10.59, 10.60, 10.61], 2),  # above the 3-day high 10.60
    ({"type": "new_high", "days": 1}, [10.39, 10.40, 10.41], 2),  # above yesterday's high 10.40
    ({"type": "new_low", "days": 3}, [9.31, 9.30, 9.29], 2),
    ({"type": "in_zone", "low": 9.5, "high": 9.6}, [9.62, 9.61, 9.60], 2),
    ({"type": "in_zone", "low": 9.5, "high": 9.6}, [9.47, 9.48, 9.49, 9.50], 3),
]


@pytest.mark.parametrize("condition, prices, first", CASES, ids=[f"{c['type']}-{i}" for i, (c, _, _) in
                                                                  enumerate(CASES)])
def test_condition_fires_at_the_exact_tick(tmp_path, condition, prices, first):
    rig = Rig(tmp_path)
    task_id = rig.add([condition])
    fired_at = [i for i, price in enumerate(prices) if rig.tick(price)]
    assert fired_at == [first]  # fire-once: the ticks after it fire nothing
    alert = rig.store.alerts(task_id=task_id)[0]
    assert alert["price"] == prices[first]
    event = rig.alerts.get(timeout=1)
    assert event.kind is EventKind.WATCH_ALERT and event.data["task_id"] == task_id
    assert event.data["price"] == prices[first] and event.stock_code == SH
    assert rig.store.get(task_id).status is TaskStatus.DONE


def test_volume_ratio_fires_at_the_exact_volume(tmp_path):
    # 5-day average 24,000 shares → 100 per minute; at 10:30 60 minutes have traded: ratio 2 at 12,000
    rig = Rig(tmp_path, start="2025-09-29T10:29:57")
    rig.add([{"type": "volume_ratio_above", "value": 2}])
    assert rig.tick(10.0, volume=11999) == []
    assert len(rig.tick(10.0, volume=12000, seconds=0)) == 1
    assert rules.volume_ratio(rig.hub.latest(SH), DAILY) == 2.0


def test_macd_cross_conditions_follow_the_last_completed_bar(tmp_path):
    rig = Rig(tmp_path)
    golden = rig.add([{"type": "macd_golden"}, {"type": "price_above", "value": 10.2}])
    dead = rig.add([{"type": "macd_dead"}])
    assert rig.tick(10.3) == []  # no cross yet
    rig.daily = DailyContext(macd_cross="golden")  # the next day's last completed bar (facts are per day)
    assert rig.tick(10.19, seconds=86400) == []  # all conditions together: the price part does not hold
    fired = rig.tick(10.2)
    assert [a["task_id"] for a in fired] == [golden]
    rig.daily = DailyContext(macd_cross="death")
    assert [a["task_id"] for a in rig.tick(10.2, seconds=9 * 86400)] == [dead]  # 10-09, after the holiday


def test_cooldown_repeats_only_after_the_cooldown(tmp_path):
    rig = Rig(tmp_path)
    task_id = rig.add([{"type": "price_above", "value": 10.5}], repeat_cooldown=60)
    assert len(rig.tick(10.5)) == 1
    assert rig.tick(10.6, seconds=30) == []
    assert rig.tick(10.6, seconds=29) == []  # 59 s after the fire
    assert len(rig.tick(10.6, seconds=1)) == 1  # 60 s
    task = rig.store.get(task_id)
    assert task.status is TaskStatus.ACTIVE and task.fired_count == 2


def test_expiry_and_trading_sessions(tmp_path):
    rig = Rig(tmp_path)
    expiring = rig.add([{"type": "price_above", "value": 10.5}], expires="2025-09-29")
    always = rig.add([{"type": "price_above", "value": 11.0}], sessions_only=False)
    in_session = rig.add([{"type": "price_above", "value": 10.9}])
    rig.clock.set(datetime(2025, 9, 29, 12, 0))  # lunch break: not a trading session
    assert [a["task_id"] for a in rig.tick(11.0)] == [always]
    rig.clock.set(datetime(2025, 9, 30, 9, 40))  # the next trading day: past the expiry
    assert [a["task_id"] for a in rig.tick(11.0)] == [in_session]
    assert rig.store.get(expiring).status is TaskStatus.EXPIRED
    assert rig.store.alerts(task_id=expiring) == []


def test_restart_keeps_fired_and_cooldown_state(tmp_path):
    rig = Rig(tmp_path)
    once = rig.add([{"type": "price_above", "value": 10.5}])
    repeat = rig.add([{"type": "price_above", "value": 10.5}], repeat_cooldown=120)
    assert len(rig.tick(10.5)) == 2
    rig.db.close()
    # a new process: new database handle, store and monitor on the same file
    rig.db = Database(tmp_path / "sim_trading.db")
    rig.store = WatchStore(rig.db, rig.clock)
    rig.signals = SignalStore(rig.db, rig.clock)
    rig.monitor = rig.new_monitor()
    assert rig.store.get(once).status is TaskStatus.DONE
    assert rig.store.get(repeat).fired_count == 1
    assert rig.tick(10.7, seconds=60) == []  # the cooldown runs on from the fire before the restart
    assert [a["task_id"] for a in rig.tick(10.7, seconds=60)] == [repeat]


def test_stop_and_start_and_edit(tmp_path):
    rig = Rig(tmp_path)
    task_id = rig.add([{"type": "price_above", "value": 10.5}])
    rig.store.set_status(task_id, TaskStatus.STOPPED)
    assert rig.tick(10.6) == []
    rig.store.set_status(task_id, TaskStatus.ACTIVE)
    assert len(rig.tick(10.6)) == 1
    edited = requests_.parse_task({"stock_code": SH, "conditions": [{"type": "price_above", "value": 10.8}]}, TODAY,
                              base=rig.store.get(task_id))
    assert rig.store.replace_body(edited).status is TaskStatus.ACTIVE  # a finished task edited runs again
    assert rig.tick(10.79) == []
    assert len(rig.tick(10.8)) == 1


QUOTE = Quote(code=SH, price=10.0, prev_close=10.0, time=datetime(2025, 9, 29, 10, 0), source="test")


@pytest.mark.parametrize("body, message", [
    ({"stock_code": "999999", "conditions": [{"type": "price_above", "value": 1}]}, "不支持的股票代码「999999」"),
    ({"stock_code": SH, "conditions": [{"type": "in_zone", "low": 10.5, "high": 10.2}]}, "下限 10.5 大于上限 10.2"),
    ({"stock_code": SH, "conditions": [{"type": "price_above", "value": 11}],
      "action": {"type": "sell", "ratio": 1.5}}, "卖出比例 ratio 超出范围"),
    ({"stock_code": SH, "conditions": [{"type": "in_zone", "low": 12.0, "high": 12.5}]}, "超出今日涨跌停范围"),
    ({"stock_code": SH, "conditions": [{"type": "price_above", "value": 11}], "expires": "2025-09-28"}, "早于今天"),
    ({"stock_code": SH, "conditions": [{"type": "rocket"}]}, "类型 'rocket' 未知"),
    ({"stock_code": SH, "conditions": []}, "至少包含一个条件"),
    ({"stock_code": SH, "conditions": [{"type": "price_above", "value": 11}],
      "exits": {"stop_loss_ratio": -0.05}}, "只有买入信号任务"),
    ({"stock_code": SH, "conditions": [{"type": "price_above", "value": 11}],
      "action": {"type": "buy", "amount": 20000}, "exits": {"stop_loss_ratio": 0.05}}, "止损比例 stop_loss_ratio"),
])
def test_invalid_bodies_are_refused_in_chinese(body, message):
    with pytest.raises(InvalidTask) as caught:
        requests_.parse_task(body, TODAY, QUOTE)
    assert message in caught.value.message and caught.value.code == "INVALID_WATCH_TASK"


def test_body_round_trip():
    body = {"stock_code": SH, "conditions": [{"type": "in_zone", "low": 9.5, "high": 9.8},
                                             {"type": "new_high", "days": 20}],
            "sessions_only": False, "repeat_cooldown": 300.0, "expires": "2025-10-31",
            "action": {"type": "buy", "amount": 20000.0},
            "exits": {"stop_loss_ratio": -0.05, "dynamic_take_profit": [[0.05, 0.97]]}}
    task = requests_.parse_task(body, TODAY, QUOTE)
    assert requests_.task_to_body(task) == body
    assert task.exits.as_params() == {"STOP_LOSS_RATIO": -0.05, "DYNAMIC_TAKE_PROFIT": [[0.05, 0.97]]}
    assert rules.trading_minutes_elapsed(datetime(2025, 9, 29, 14, 0).time()) == 180
    assert rules.trading_minutes_elapsed(datetime(2025, 9, 29, 12, 0).time()) == 120  # the lunch break


class LoadTimer:
    """The monitor's pass timer, moved on by each daily-facts load (`cost` seconds, as a database read)."""

    def __init__(self, cost: float):
        self.now, self.cost = 0.0, cost

    def __call__(self) -> float:
        return self.now


def test_daily_facts_after_a_day_switch_load_over_passes_without_holding_up_price_alerts(tmp_path):
    """Issue 26: after a day switch every stock's daily facts are loaded again; a pass spends at most
    WATCH_DAILY_LOAD_MS on that (the rest in the next passes, started at once), so a price alert is never late,
    and each stock's facts are loaded once per day."""
    rig = Rig(tmp_path)
    assert rig.settings.get("WATCH_DAILY_LOAD_MS") == 8.0
    timer, loads = LoadTimer(0.005), []

    def daily(code: str, day: date) -> DailyContext:
        loads.append((code, day))
        timer.now += timer.cost
        return DAILY

    monitor = WatchMonitor(rig.store, rig.hub, rig.signals, positions=None, events=rig.events,
                           settings=rig.settings, clock=rig.clock, daily=daily, timer=timer)
    codes = ["600000.SH", "600004.SH", "600006.SH", "600007.SH"]
    for code in codes:  # an N-day-high task on each stock (needs the daily facts), firing at 10.61
        rig.store.add(requests_.parse_task({"stock_code": code, "conditions": [{"type": "new_high", "days": 3}],
                                            "repeat_cooldown": 3600}, rig.clock.today()))
    rig.store.add(requests_.parse_task({"stock_code": SH, "conditions": [{"type": "price_above", "value": 10.5}],
                                        "repeat_cooldown": 3600}, rig.clock.today()))

    def burst(seconds: float = 3) -> list[str]:
        rig.clock.advance(seconds)
        for code in codes + [SH]:
            rig.hub.publish(Quote(code=code, price=10.61, prev_close=10.0, time=rig.clock.now(), source="test"))
        return sorted(a["stock_code"] for a in monitor.run_once())

    # 8 ms per pass, 5 ms per load: a load starts while the pass has time left, so two loads a pass
    assert burst() == sorted([SH] + codes[:2]) and monitor.daily_pending
    assert burst() == codes[2:] and not monitor.daily_pending
    assert burst() == [] and loads == [(c, TODAY) for c in codes]  # cooldown; facts kept for the day
    tomorrow = date(2025, 9, 30)
    assert burst(seconds=86400) == sorted([SH] + codes[:2]) and monitor.daily_pending  # the price alert on time
    assert burst() == codes[2:] and not monitor.daily_pending
    assert loads[4:] == [(c, tomorrow) for c in codes]


def test_a_pass_loads_at_least_one_stocks_daily_facts_even_when_one_load_exceeds_the_budget(tmp_path):
    rig = Rig(tmp_path)
    timer, loads = LoadTimer(0.050), []  # 50 ms a load on a slow disk, 8 ms budget a pass

    def daily(code: str, day: date) -> DailyContext:
        loads.append(code)
        timer.now += timer.cost
        return DAILY

    monitor = WatchMonitor(rig.store, rig.hub, rig.signals, positions=None, events=rig.events,
                           settings=rig.settings, clock=rig.clock, daily=daily, timer=timer)
    codes = ["600000.SH", "600004.SH", "600006.SH"]
    for code in codes:
        rig.store.add(requests_.parse_task({"stock_code": code, "conditions": [{"type": "new_low", "days": 3}]},
                                           rig.clock.today()))
    fired = []
    for _ in codes:
        rig.clock.advance(3)
        for code in codes:
            rig.hub.publish(Quote(code=code, price=9.2, prev_close=10.0, time=rig.clock.now(), source="test"))
        fired.append([a["stock_code"] for a in monitor.run_once()])
    assert fired == [[code] for code in codes] and loads == codes and not monitor.daily_pending
