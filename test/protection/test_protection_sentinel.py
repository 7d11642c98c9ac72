"""The protection guarantee (DESIGN §8a, issue 25): the pure verdict as tables with exact prices, the deadline
boundary, the sentinel thread's events on real components (sim broker, journal, quote hub on SQLite files), the
heartbeat to a loopback receiver, and /api/health through the real web server."""
from __future__ import annotations

import http.server
import logging
import threading
from datetime import date, datetime, timedelta

import pytest

import config
import strategy
from core.events import EventBus, EventKind
from protection.heartbeat import HeartbeatSender
from core.models import BrokerPosition, OrderStatus, Position, Quote, Rule, Side
from core.order_journal import JournalEntry
from protection.sentinel import (Cause, DaemonFacts, Facts, Judgement, LinkFacts, Pending, ProtectionSentinel,
                                 ProtectionState, StateFacts, apply_deadline, judge_position, verdict)
from market.quote_hub import QuoteHub
from trading_support import FakeTime, build_core, make_settings, replay_clock

CODE = "600036.SH"
NOW = datetime(2024, 2, 19, 10, 0, 0)  # a Monday, continuous session
PARAMS = strategy.RuleParams.from_settings(config.DEFAULTS)  # STOP_LOSS_RATIO −0.095: stop at 10.00 × 0.905 = 9.05

P, EW, EX, F = (ProtectionState.PROTECTED, ProtectionState.EXIT_WORKING, ProtectionState.EXPLAINED,
                ProtectionState.FAILURE)


def held(**changes) -> Position:
    return Position(CODE, "招商银行", volume=1000, available=1000, cost_price=10.0, base_cost_price=10.0,
                    highest_price=10.0).copy(**changes)


def quote(price: float, at: datetime = NOW, prev_close: float = 9.80, limit_down=None) -> Quote:
    return Quote(CODE, price, prev_close, at, "test", limit_down=limit_down)


def entry(status: OrderStatus, order_id: str = "SIM1", volume: int = 1000, filled: int = 0,
          rule: Rule = Rule.STOP_LOSS) -> JournalEntry:
    return JournalEntry(client_id="Q1", order_id=order_id, stock_code=CODE, side=Side.SELL, volume=volume, price=9.02,
                        status=status, filled_volume=filled, filled_amount=0.0, rule=rule, origin_rule=rule,
                        signal_id=None, mode="simulation", reason="", created_at=NOW, updated_at=NOW,
                        trading_day=NOW.date(), parent_client_id="", root_client_id="", reprice_count=0,
                        reprice_state="", replaced_by="")


def facts(position=None, q="default", sells=(), now=NOW, link=LinkFacts(), trading=StateFacts(), params=PARAMS,
          macd=False, feed_now=None) -> Facts:
    q = quote(9.04) if q == "default" else q
    return Facts(now=now, session=_session(now), feed_now={"test": feed_now} if feed_now else {},
                 stale_seconds=30.0, positions=[position or held()], quotes={CODE: q} if q else {},
                 open_sells={CODE: tuple(sells)} if sells else {}, params={CODE: params}, link=link,
                 trading=trading, macd_exits=frozenset({CODE}) if macd else frozenset())


def _session(now: datetime) -> str:
    import market_rules
    return market_rules.session_at(now)


def params(**changes) -> strategy.RuleParams:
    return strategy.RuleParams.from_settings({**config.DEFAULTS, **changes})


STOP = "止损条件成立（现价 9.04，触发价 9.05）"
LOCK = "600036.SH 已停止自动交易：操作员锁定该股票（不自动交易）"

# (case, facts, expected state, expected cause, expected reason)
VERDICTS = [
    ("above the stop", facts(q=quote(9.06)), P, None, "未触发清仓条件（现价 9.06，止损价 9.05）"),
    ("stop-loss at 9.04, no sell", facts(), F, Cause.NO_SELL, f"{STOP}，但没有卖单在券商处工作"),
    ("exactly on the stop", facts(q=quote(9.05)), F, Cause.NO_SELL,
     "止损条件成立（现价 9.05，触发价 9.05），但没有卖单在券商处工作"),
    ("sell acknowledged", facts(held(available=0), sells=[entry(OrderStatus.OPEN)]), EW, None,
     f"{STOP}，卖单 SIM1 已在券商处工作（未成交 1000 股）"),
    ("sell partly filled",
     facts(held(volume=600, available=0), sells=[entry(OrderStatus.PARTIALLY_FILLED, filled=400)]), EW, None, f"{STOP}，卖单 SIM1 已在券商处工作（未成交 600 股）"),
    ("sealed limit-down (from prev close)", facts(q=quote(8.82)), EX, None,
     "止损条件成立（现价 8.82，触发价 9.05），但已跌停（跌停价 8.82），卖出无法成交"),
    ("sealed limit-down (from the quote)", facts(q=quote(8.50, prev_close=9.45, limit_down=8.51)), EX, None,
     "止损条件成立（现价 8.5，触发价 9.05），但已跌停（跌停价 8.51），卖出无法成交"),
    ("one tick above limit-down", facts(q=quote(8.83)), F, Cause.NO_SELL,
     "止损条件成立（现价 8.83，触发价 9.05），但没有卖单在券商处工作"),
    ("T+1: nothing available", facts(held(available=0)), EX, None,
     f"{STOP}，但没有可卖数量（T+1：今日买入的股份下一交易日才能卖出）"),
    ("lunch break", facts(now=datetime(2024, 2, 19, 12, 0), q=quote(9.04, at=datetime(2024, 2, 19, 11, 29, 57))),
     EX, None, "非交易时段（午间休市），不会委托"),
    ("closed, no quote at all", facts(now=datetime(2024, 2, 19, 15, 30), q=None), EX, None, "非交易时段（休市），不会委托"),
    ("weekend", facts(now=datetime(2024, 2, 17, 10, 0), q=None), EX, None, "非交易时段（休市），不会委托"),
    ("emergency stop", facts(trading=StateFacts("halted", "web", "人工紧急停止")), EX, None,
     "已紧急停止（人工紧急停止），不会自动卖出"),
    ("paused", facts(trading=StateFacts("paused", "web", "收盘前观察")), EX, None,
     "已暂停自动交易（收盘前观察），不会自动卖出"),
    ("locked by the owner", facts(trading=StateFacts(locks={CODE: LOCK})), EX, None, f"该股已被锁定（{LOCK}）"),
    ("stale quote in session", facts(q=quote(9.04, at=NOW - timedelta(seconds=31))), F, Cause.QUOTE_STALE,
     "无法判断：行情过期，600036.SH 的最新行情时间 09:59:29 已超过 30 秒（31 秒）未更新"),
    ("quote exactly 30 s old still counts", facts(q=quote(9.04, at=NOW - timedelta(seconds=30))), F, Cause.NO_SELL,
     f"{STOP}，但没有卖单在券商处工作"),
    ("no quote in session", facts(q=None), F, Cause.QUOTE_STALE, "无法判断：没有 600036.SH 的行情"),
    ("stale quote, calm price: still cannot judge", facts(q=quote(10.5, at=NOW - timedelta(minutes=5))), F,
     Cause.QUOTE_STALE, "无法判断：行情过期，600036.SH 的最新行情时间 09:55:00 已超过 30 秒（300 秒）未更新"),
    ("box clock 120 s ahead of the feed", facts(q=quote(9.04, at=NOW - timedelta(seconds=120)),
                                                feed_now=NOW - timedelta(seconds=119)), F, Cause.NO_SELL,
     f"{STOP}，但没有卖单在券商处工作"),
    ("cancel pending holds the shares", facts(held(available=0), sells=[entry(OrderStatus.CANCEL_PENDING)]), F,
     Cause.CANCEL_PENDING, f"{STOP}，但卖单 SIM1 撤单未完成（仍占用可卖股份）"),
    ("the stop works, a withdrawn take-profit hangs in cancel",
     facts(held(available=0), sells=[entry(OrderStatus.CANCEL_PENDING, order_id="SIM0", volume=300,
                                           rule=Rule.TAKE_PROFIT), entry(OrderStatus.OPEN, volume=700)]), F,
     Cause.CANCEL_PENDING, f"{STOP}，但卖单 SIM0 撤单未完成（仍占用可卖股份）"),
    ("sell never acknowledged", facts(held(available=0), sells=[entry(OrderStatus.PENDING_SUBMIT, order_id="")]), F,
     Cause.SELL_NOT_ACKNOWLEDGED, f"{STOP}，但卖单 Q1 尚未获券商确认（没有券商委托号）"),
    ("outcome unknown", facts(held(available=0), sells=[entry(OrderStatus.UNKNOWN, order_id="")]), F,
     Cause.ORDER_UNKNOWN, f"{STOP}，但卖单 Q1 结果未知，需与券商核对"),
    ("a take-profit rests, the rest is free", facts(held(available=700),
                                                   sells=[entry(OrderStatus.OPEN, volume=300, rule=Rule.TAKE_PROFIT)]),
     F, Cause.SELL_INCOMPLETE, f"{STOP}，卖单在工作，但仍有 700 股可卖未挂卖单"),
    ("broker down while the stop holds", facts(link=LinkFacts(False, "券商未连接")), F, Cause.BROKER_DOWN,
     f"{STOP}，但券商连接断开（券商未连接）"),
    ("broker down, calm price", facts(q=quote(9.80), link=LinkFacts(False, "券商未连接")), F, Cause.BROKER_DOWN,
     "券商连接断开（券商未连接），跌到止损价也无法卖出"),
    ("broker down, nothing sellable", facts(held(available=0), q=quote(9.80), link=LinkFacts(False, "券商未连接")), P,
     None, "未触发清仓条件（现价 9.8，止损价 9.05）"),
    ("storage halt is no owner's stop", facts(trading=StateFacts("halted", "storage", "磁盘已满")), F, Cause.STORAGE,
     f"{STOP}，但存储故障已停止交易（磁盘已满）"),
    ("auto-trading off: the signal waits for a person", facts(trading=StateFacts(auto_trading=False)), EX, None,
     f"{STOP}，但自动交易已关闭：卖出信号排队等待人工执行"),
    ("selling switched off", facts(params=params(ENABLE_ALLOW_SELL=False)), EX, None, f"{STOP}，但「允许卖出」已关闭"),
    ("exit rules switched off", facts(params=params(ENABLE_DYNAMIC_STOP_PROFIT=False)), P, None, "未触发清仓条件（现价 9.04）"),
    ("dynamic take-profit", facts(held(highest_price=12.0, profit_triggered=True), q=quote(10.44, prev_close=10.8)), F,
     Cause.NO_SELL, "动态止盈条件成立（现价 10.44，触发价 10.44），但没有卖单在券商处工作"),
    ("just above the dynamic stop",
     facts(held(highest_price=12.0, profit_triggered=True), q=quote(10.45, prev_close=10.8)), P, None, "未触发清仓条件（现价 10.45，止损价 9.05，动态止盈价 10.44）"),
    ("MACD sell-all", facts(q=quote(10.2), macd=True, params=params(ENABLE_MACD_SELL=True)), F, Cause.NO_SELL,
     "MACD 死叉清仓条件成立（现价 10.2），但没有卖单在券商处工作"),
    ("MACD cross with MACD sells off", facts(q=quote(10.2), macd=True), P, None, "未触发清仓条件（现价 10.2，止损价 9.05）"),
]


@pytest.mark.parametrize("case, given, state, cause, reason", VERDICTS, ids=[row[0] for row in VERDICTS])
def test_verdict_table(case, given, state, cause, reason):
    assert judge_position(given.positions[0], given) == Judgement(CODE, state, reason, cause)


def test_a_failure_is_raised_exactly_at_the_deadline_and_keeps_its_start():
    pending: dict = {}
    states = []
    for t in (100.0, 114.999, 115.0, 200.0):
        report, pending = verdict(facts(), pending, t, deadline=15.0)
        [stock] = report.verdicts
        states.append((stock.state, stock.cause, stock.since))
        assert report.ok is (stock.state is not F)
    assert states == [(P, Cause.NO_SELL, NOW), (P, Cause.NO_SELL, NOW), (F, Cause.NO_SELL, NOW),
                      (F, Cause.NO_SELL, NOW)]
    before, _ = verdict(facts(), {CODE: Pending(NOW, 100.0)}, 107.0, 15.0)
    assert before.verdicts[0].reason == f"{STOP}，但没有卖单在券商处工作（已 7 秒，15 秒内未解决将报保护失效）"
    assert before.to_dict()["positions"] == [{"stock_code": CODE, "state": "protected",
                                              "reason": before.verdicts[0].reason}]


def test_the_clock_restarts_once_the_position_is_protected_again():
    _, pending = verdict(facts(), {}, 100.0, 15.0)
    working = facts(held(available=0), sells=[entry(OrderStatus.OPEN)])
    report, pending = verdict(working, pending, 110.0, 15.0)
    assert (report.verdicts[0].state, pending) == (EW, {})
    later = datetime(2024, 2, 19, 10, 5)
    report, pending = verdict(facts(now=later, q=quote(9.04, at=later)), pending, 120.0, 15.0)
    assert (report.verdicts[0].state, pending) == (P, {CODE: Pending(later, 120.0)})
    report, _ = verdict(facts(now=later, q=quote(9.04, at=later)), pending, 135.0, 15.0)
    assert report.to_dict() == {"ok": False, "checked_at": "2024-02-19T10:05:00", "failures": [{
        "stock_code": CODE, "cause": "no_working_sell", "cause_label": "清仓条件成立但没有卖单", "since": "2024-02-19T10:05:00",
        "reason": f"{STOP}，但没有卖单在券商处工作"}], "positions": [{"stock_code": CODE, "state": "failure",
                                                            "reason": f"{STOP}，但没有卖单在券商处工作"}]}


def test_apply_deadline_passes_calm_judgements_through_untouched():
    calm = Judgement(CODE, EX, "非交易时段（休市），不会委托")
    verdicts, pending = apply_deadline([calm], {CODE: Pending(NOW, 1.0)}, NOW, 100.0, 15.0)
    assert [(v.state, v.cause, v.since) for v in verdicts] == [(EX, None, None)] and pending == {}


# ---- the sentinel thread on real components --------------------------------------------------------------

class Scene:
    """A sim account holding 1000 × 600036 bought at 10.00 the trading day before; the market on 2024-02-19."""

    def __init__(self, tmp_path, **overrides):
        self.clock = replay_clock("2024-02-08 10:00:00")
        self.settings = make_settings(tmp_path, **{"ENABLE_AUTO_TRADING": True, **overrides})
        self.hub = QuoteHub(self.settings, self.clock)
        self.core = build_core(tmp_path / "sim_trading.db", self.settings, self.clock, self.hub.latest)
        self.hub.subscribe(self.core.sim.on_quote)
        self.events = EventBus(self.clock)
        self.alarms = self.events.subscribe([EventKind.PROTECTION_FAILURE, EventKind.PROTECTION_RESTORED])
        self.time = FakeTime()
        rule_params = strategy.RuleParams.from_settings(self.settings)
        self.facts = DaemonFacts(self.core.positions, self.hub, self.core.executor.journal, self.core.sim,
                                 self.core.state, self.settings, self.clock, lambda code: rule_params)
        self.sentinel = ProtectionSentinel(self.facts.read, self.events, self.settings, self.clock, now=self.time)
        self.price(10.00, 10.00)
        self.core.executor.buy_stock(CODE, volume=1000)
        self.clock.set(datetime(2024, 2, 19, 10, 0))

    def price(self, price: float, prev_close: float) -> None:
        assert self.hub.publish(Quote(CODE, price, prev_close, self.clock.now(), "test"))

    def check(self, at: float):
        self.time.value = at
        return self.sentinel.run_once()

    def published(self) -> list[tuple[EventKind, str, str]]:
        return [(e.kind, e.stock_code, e.message) for e in self.alarms.drain()]


def test_the_sentinel_raises_repeats_and_clears_a_protection_failure(tmp_path):
    scene = Scene(tmp_path)
    [position] = scene.core.positions.all()
    assert (position.volume, position.available, position.cost_price) == (1000, 1000, 10.0051)  # 10,000 + 5.10 fees
    scene.price(9.04, 10.00)  # stop at 10.0051 × 0.905 = 9.0546155
    assert scene.check(1000.0).ok and scene.published() == []
    assert scene.check(1014.9).ok and scene.published() == []
    report = scene.check(1015.0)
    condition = "止损条件成立（现价 9.04，触发价 9.05462），但没有卖单在券商处工作"
    assert [(v.stock_code, v.state, v.cause) for v in report.failures] == [(CODE, F, Cause.NO_SELL)]
    assert scene.published() == [(EventKind.PROTECTION_FAILURE, CODE, f"保护失效：{CODE} 清仓条件成立但没有卖单：{condition}")]
    assert scene.check(1314.9).ok is False and scene.published() == []  # no repeat before 5 minutes
    scene.check(1315.0)
    assert scene.published() == [(EventKind.PROTECTION_FAILURE, CODE,
                                  f"保护失效仍在持续：{CODE} 清仓条件成立但没有卖单：{condition}")]
    order = scene.core.executor.sell_stock(CODE, 1000, price=9.50, rule=Rule.STOP_LOSS)  # rests above the market
    assert order.status is OrderStatus.OPEN and order.order_id
    report = scene.check(1316.0)
    assert report.ok and [v.state for v in report.verdicts] == [EW]
    [(kind, code, message)] = scene.published()
    assert (kind, code) == (EventKind.PROTECTION_RESTORED, CODE)
    assert message == (f"保护恢复：{CODE}（止损条件成立（现价 9.04，触发价 9.05462），卖单 {order.order_id} 已在券商处工作"
                       "（未成交 1000 股））")


def test_a_sentinel_that_stops_passing_turns_its_own_report_into_a_failure(tmp_path):
    scene = Scene(tmp_path)
    scene.price(10.00, 10.00)
    assert scene.check(1000.0).ok
    scene.time.value = 1014.9
    assert scene.sentinel.is_ok()
    scene.time.value = 1015.0
    view = scene.sentinel.report_view()
    assert view["ok"] is False and view["failures"] == [{
        "stock_code": "", "cause": "check_stalled", "cause_label": "保护检查已停止", "since": "2024-02-19T10:00:00",
        "reason": "保护检查已 15 秒没有完成（线程停止或卡住），无法确认持仓受到保护"}]
    assert view["positions"][0]["state"] == "protected"


def test_facts_that_cannot_be_read_become_a_failure_after_the_deadline(tmp_path, caplog):
    scene = Scene(tmp_path)

    def broken():
        raise OSError("database is locked")

    sentinel = ProtectionSentinel(broken, scene.events, scene.settings, scene.clock, now=scene.time)
    with caplog.at_level(logging.ERROR, logger="protection.sentinel"):
        for t in (1000.0, 1001.0, 1015.0):
            scene.time.value = t
            report = sentinel.run_once()
    assert [(v.stock_code, v.cause) for v in report.failures] == [("", Cause.CHECK_FAILED)]
    assert sum("保护检查无法读取" in r.getMessage() for r in caplog.records) == 2  # once logged, once alarmed
    [(kind, code, message)] = scene.published()
    assert (kind, code) == (EventKind.PROTECTION_FAILURE, "")
    assert message == "保护失效：全部持仓 保护检查无法读取数据：保护检查无法读取持仓、行情或委托（database is locked）"


def test_a_raised_failure_is_not_announced_as_restored_while_the_facts_cannot_be_read(tmp_path):
    scene = Scene(tmp_path)
    broken = []

    def read():
        if broken:
            raise OSError("disk I/O error")
        return scene.facts.read()

    sentinel = ProtectionSentinel(read, scene.events, scene.settings, scene.clock, now=scene.time)
    scene.price(9.04, 10.00)
    for t in (1000.0, 1015.0):
        scene.time.value = t
        sentinel.run_once()
    assert [kind for kind, _, _ in scene.published()] == [EventKind.PROTECTION_FAILURE]
    broken.append(True)
    scene.time.value = 1016.0
    report = sentinel.run_once()
    assert [(v.stock_code, v.state) for v in report.failures] == [(CODE, F)] and scene.published() == []
    scene.time.value = 1031.0
    report = sentinel.run_once()
    assert [(v.stock_code, v.cause) for v in report.failures] == [(CODE, Cause.NO_SELL), ("", Cause.CHECK_FAILED)]
    assert [(kind, code) for kind, code, _ in scene.published()] == [(EventKind.PROTECTION_FAILURE, "")]
    broken.clear()
    scene.time.value = 1032.0
    assert [v.stock_code for v in sentinel.run_once().failures] == [CODE]
    assert scene.published() == [(EventKind.PROTECTION_RESTORED, "", "保护恢复：保护检查已恢复正常")]


def test_daemon_facts_read_the_owner_lock_the_link_and_the_feed_clock(tmp_path):
    scene = Scene(tmp_path)
    scene.price(9.04, 10.00)
    read = scene.facts.read()
    assert (read.session, read.feed_now, read.link, read.trading.locks) == ("continuous", {"test": read.now},
                                                                            LinkFacts(), {})
    scene.core.state.halt_stock(CODE, "操作员锁定该股票（不自动交易）", "web")
    scene.core.sim.close()
    read = scene.facts.read()
    assert read.trading.locks == {CODE: LOCK} and read.link == LinkFacts(False, "券商未连接")
    assert judge_position(read.positions[0], read).state is EX


# ---- the heartbeat to an outside monitor ---------------------------------------------------------------

class Receiver:
    """A loopback push receiver (what healthchecks.io or Uptime Kuma does): records each GET path."""

    def __init__(self, status: int = 200):
        paths, self.status = [], status
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                paths.append(self.path)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            def log_message(self, *args):
                pass

        self.paths = paths
        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/ping/0f3c-secret"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_heartbeats_arrive_while_protected_stop_during_a_failure_and_resume(tmp_path, receiver):
    scene = Scene(tmp_path, HEARTBEAT_URL=receiver.url)
    beats = HeartbeatSender(scene.settings, scene.sentinel.is_ok, now=scene.time)
    scene.price(10.00, 10.00)
    scene.check(1000.0)
    assert beats.run_once() is True and receiver.paths == ["/ping/0f3c-secret"]
    assert beats.is_due() is False
    scene.price(9.04, 10.00)
    scene.check(1001.0)
    scene.time.value = 1060.0
    assert beats.is_due() and scene.sentinel.is_ok() is False  # no pass for 59 s: the check itself has failed
    scene.check(1060.0)  # and the stop-loss has held for 59 s with no sell
    assert beats.run_once() is False and len(receiver.paths) == 1
    scene.core.executor.sell_stock(CODE, 1000, price=9.50, rule=Rule.STOP_LOSS)
    scene.check(1120.0)
    assert beats.run_once() is True and len(receiver.paths) == 2 and beats.sent == 2


def test_an_unreachable_or_refusing_monitor_is_logged_rarely_and_blocks_nothing(tmp_path, receiver, caplog):
    receiver.status = 500
    settings = make_settings(tmp_path, HEARTBEAT_URL=receiver.url)
    time = FakeTime()
    beats = HeartbeatSender(settings, lambda: True, now=time)
    with caplog.at_level(logging.WARNING, logger="protection.heartbeat"):
        assert beats.run_once() is False
        time.value += 60
        assert beats.run_once() is False
        receiver.status = 200
        time.value += 60
        assert beats.run_once() is True
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["外部监控心跳发送失败：外部监控回复 HTTP 500（不影响交易；10 分钟内不再重复记录）", "外部监控心跳已恢复发送"]
    assert all("0f3c-secret" not in line for line in lines)
    receiver.close()
    assert beats.run_once() is False  # connection refused: answered at once, not raised


def test_no_heartbeat_url_means_no_heartbeat(tmp_path, receiver):
    beats = HeartbeatSender(make_settings(tmp_path), lambda: True, now=FakeTime())
    assert beats.run_once() is False and receiver.paths == []


# ---- /api/health through the real web server ----------------------------------------------------------

def test_health_turns_red_with_the_protection_object_after_the_deadline(system, client):
    from web_test_support import ok

    system.positions.refresh_from_broker([BrokerPosition("601988.SH", 1000, 1000, 3.50, stock_name="中国银行")])
    time = FakeTime()
    facts_of = DaemonFacts(system.positions, system.data.hub, system.executor.journal, system.broker,
                           system.trading_state, system.settings, system.clock, system.stock_params.params_for)
    sentinel = ProtectionSentinel(facts_of.read, system.events, system.settings, system.clock, now=time)
    system.ctx.protection = sentinel.report_view
    system.watchdog.start()
    sentinel.run_once()
    data = ok(client.get("/api/health"))
    assert (data["status"], data["protection"]["ok"], data["protection"]["failures"]) == ("green", True, [])
    [row] = data["protection"]["positions"]
    assert (row["stock_code"], row["state"]) == ("601988.SH", "protected")
    assert row["reason"].startswith("无法判断：没有 601988.SH 的行情（已 0 秒")
    time.value += 15
    sentinel.run_once()
    data = ok(client.get("/api/health"))
    since = data["protection"]["checked_at"]
    assert data["status"] == "red" and data["protection"]["ok"] is False
    assert data["protection"]["failures"] == [{"stock_code": "601988.SH", "cause": "quote_stale",
                                               "cause_label": "无法判断：行情过期", "since": since,
                                               "reason": "无法判断：没有 601988.SH 的行情"}]
    assert data["protection"]["positions"] == [{"stock_code": "601988.SH", "state": "failure",
                                                "reason": "无法判断：没有 601988.SH 的行情"}]
    assert "保护失效：601988.SH（无法判断：行情过期）" in data["alarms"]
    assert data["threads_alive"] is True  # red because of protection alone


def test_overview_shows_the_red_banner_naming_stock_and_cause(system, server):
    from browser_support import chromium, open_tab, real_problems, require_browser

    require_browser()
    system.positions.refresh_from_broker([BrokerPosition("601988.SH", 1000, 1000, 3.50, stock_name="中国银行")])
    time = FakeTime()
    facts_of = DaemonFacts(system.positions, system.data.hub, system.executor.journal, system.broker,
                           system.trading_state, system.settings, system.clock, system.stock_params.params_for)
    sentinel = ProtectionSentinel(facts_of.read, system.events, system.settings, system.clock, now=time)
    system.ctx.protection = sentinel.report_view
    sentinel.run_once()
    with chromium() as browser:
        context, tab = open_tab(browser)
        tab.goto(f"{server.url}/#overview")
        tab.wait_for_selector("#health-body tr")
        assert tab.locator("#protection-banner").is_hidden()
        time.value += 15
        sentinel.run_once()
        tab.reload()
        tab.locator("#protection-banner").wait_for(state="visible")
        assert tab.inner_text("#protection-banner") == ("保护失效：601988.SH（无法判断：行情过期）："
                                                        "无法判断：没有 601988.SH 的行情")
        tab.click("#tabs a[data-tab='orders']")  # the banner stays wherever the owner looks
        assert tab.locator("#protection-banner").is_visible()
        assert real_problems(tab) == []
        context.close()


def test_the_built_daemon_runs_the_sentinel_and_the_heartbeat_and_health_reports_protection(tmp_path):
    import json
    import urllib.request

    from daemon.composition import build_daemon
    from persistence.config_store import ConfigStore
    from daemon_support import free_port
    from logger import SecretFilter
    from persistence.storage import Database

    port = free_port()
    pool = tmp_path / "pool.json"
    pool.write_text(json.dumps(["600000"]), encoding="utf-8")
    settings = ConfigStore(Database(tmp_path / "config.db"), run_overrides={"DATA_SOURCE": "replay", "WEB_PORT": port})
    daemon = build_daemon(settings, tmp_path / "data", tmp_path / "logs", SecretFilter(), pool)
    try:
        assert {"protection", "heartbeat"} <= {t["name"] for t in daemon.watchdog.health()}
        daemon.components["protection"].run_once()
        token = (tmp_path / "data" / "api_token").read_text(encoding="utf-8").strip()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/health", headers={"X-API-Token": token})
        with urllib.request.urlopen(request, timeout=10) as response:
            protection = json.loads(response.read().decode("utf-8"))["data"]["protection"]
        assert (protection["ok"], protection["failures"], protection["positions"]) == (True, [], [])
    finally:
        daemon.shutdown()
