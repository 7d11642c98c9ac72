"""A broker call that never returns (issue 21 item 3): it overruns its deadline and the order becomes unknown,
reconciled with the broker and never re-sent; no executor lock is held meanwhile; the emergency stop answers
at once; shutdown does not wait; the watchdog detects a stuck thread from its declared step time and raises
an alarm (health red) when a restart leaves it stuck at the same call again."""
from __future__ import annotations

import threading
import time

import pytest

from qmt.broker_guard import BrokerCallTimeout, BrokerGuard, broker_step_seconds
from core.events import EventBus, EventKind
from core.models import BrokerUnavailable, OrderStatus, Side
from position_manager import PositionManager
from sim_trader import SimTrader
from persistence.storage import Database
from trading_executor import TradingExecutor
from core.trading_state import TradingState
from trading_support import FakeTime, QuoteBoard, make_settings, replay_clock
from web_test_support import Client, build_system, start_server
from daemon.workers import Watchdog, Worker

CODE = "600036.SH"


class HangingBroker:
    """Stand-in for a broker whose `place_order` blocks (like a sync xttrader call that never returns)
    until the test releases it, then does the real sim work."""

    def __init__(self, inner: SimTrader):
        self.inner = inner
        self.release = threading.Event()
        self.entered = threading.Event()
        self.hang_place_order = True
        self.hang_cancel = False

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def place_order(self, request):
        if self.hang_place_order:
            self.entered.set()
            self.release.wait(30)
        return self.inner.place_order(request)

    def cancel_order(self, order_id):
        if self.hang_cancel:
            self.entered.set()
            self.release.wait(30)
        return self.inner.cancel_order(order_id)


@pytest.fixture
def core(tmp_path):
    settings = make_settings(tmp_path)
    settings.update({"BROKER_CALL_TIMEOUT": 1.0})  # a stored value: a test may change it
    clock = replay_clock("2024-03-04T10:00:00")
    quotes = QuoteBoard(clock)
    quotes.set(CODE, 10.0, 10.0, "招商银行")
    db = Database(tmp_path / "sim_trading.db")
    sim = SimTrader(db, settings, clock, quotes)
    hanging = HangingBroker(sim)
    hanging.hang_place_order = False
    guard = BrokerGuard(hanging, lambda: settings.get("BROKER_CALL_TIMEOUT"))
    positions = PositionManager(db, settings, clock, "simulation")
    state = TradingState(db, clock)
    executor = TradingExecutor(db, guard, positions, quotes, settings, clock, state)
    sim.set_listener(executor)
    executor.recover()
    yield dict(settings=settings, sim=sim, hanging=hanging, guard=guard, executor=executor, state=state,
               positions=positions)
    hanging.release.set()
    db.close()


def run_in_thread(fn):
    box = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread, box


def elapsed(fn):
    start = time.monotonic()
    result = fn()
    return time.monotonic() - start, result


def test_hung_place_order_overruns_into_unknown_without_holding_executor_locks(core):
    executor, hanging, sim = core["executor"], core["hanging"], core["sim"]
    hanging.hang_place_order = True
    thread, box = run_in_thread(lambda: executor.buy_stock(CODE, volume=1000, price=10.0))
    assert hanging.entered.wait(5)
    # While the call hangs, every other path of the executor answers at once (no executor lock is held).
    seconds, cancelled = elapsed(executor.cancel_all)
    assert seconds < 0.3 and cancelled == 0  # the hanging order has no broker id yet: nothing to cancel
    seconds, _ = elapsed(executor.check_open_orders)
    assert seconds < 0.3
    seconds, _ = elapsed(lambda: core["state"].halt("测试", "web"))
    assert seconds < 0.3
    core["state"].resume("测试", "web")
    thread.join(5)
    assert isinstance(box["error"], BrokerCallTimeout)
    assert box["error"].code == "BROKER_TIMEOUT"
    [entry] = executor.journal.open_entries()
    assert entry.status is OrderStatus.UNKNOWN
    assert "结果未知" in entry.reason
    # While that call is still outstanding the broker counts as hung: a new order fails at once (here at the
    # cash check, which asks the broker) and nothing more is journaled or sent.
    start = time.monotonic()
    with pytest.raises(BrokerUnavailable) as refused:
        executor.buy_stock(CODE, volume=100, price=10.0)
    assert time.monotonic() - start < 0.3
    assert refused.value.code == "BROKER_HUNG" and "place_order" in refused.value.message
    assert core["guard"].hung_call()[0] == "place_order"
    assert len(executor.list_orders()) == 1
    # The call finally returns: the order reached the broker once; reconciliation takes the broker's word.
    hanging.hang_place_order = False
    hanging.release.set()
    deadline = time.monotonic() + 5
    while core["guard"].hung_call() is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    executor.check_open_orders()
    after = executor.journal.get(entry.client_id)
    assert after.status is OrderStatus.FILLED  # marketable at 10.00: the sim filled it
    assert after.filled_volume == 1000
    assert [o.client_id for o in sim.query_orders()].count(entry.client_id) == 1  # never re-sent
    assert core["positions"].get(CODE).volume == 1000
    assert len(executor.trade_records()) == 1


def test_broker_guard_stop_releases_a_waiting_caller_at_once(core):
    core["settings"].update({"BROKER_CALL_TIMEOUT": 60.0})
    hanging = core["hanging"]
    hanging.hang_place_order = True
    thread, box = run_in_thread(lambda: core["executor"].buy_stock(CODE, volume=100, price=10.0))
    assert hanging.entered.wait(5)
    seconds, _ = elapsed(lambda: core["guard"].stop(grace=0.2))
    thread.join(2)
    assert not thread.is_alive() and seconds < 0.5
    assert box["error"].code == "BROKER_STOPPING"
    [entry] = core["executor"].journal.open_entries()
    assert entry.status is OrderStatus.UNKNOWN  # it may have reached the broker: reconciled at the next start
    with pytest.raises(BrokerUnavailable):
        core["guard"].query_asset()


def test_emergency_stop_answers_within_a_second_while_the_broker_hangs(tmp_path):
    hanging: list[HangingBroker] = []

    def wrap(sim):
        hanging.append(HangingBroker(sim))
        return BrokerGuard(hanging[0], lambda: 30.0)

    system = build_system(tmp_path, {"BROKER_CALL_TIMEOUT": 30.0}, wrap_broker=wrap)
    server = start_server(system)
    try:
        thread, box = run_in_thread(lambda: system.executor.buy_stock(CODE, volume=100))
        assert hanging[0].entered.wait(5)
        client = Client(server.port)
        seconds, reply = elapsed(lambda: client.post("/api/actions/emergency_stop"))
        assert reply.status == 200, reply.text
        assert seconds < 1.0
        assert reply.json["data"]["trading_state"]["state"] == "halted"
        seconds, health = elapsed(lambda: client.get("/api/health"))
        assert health.status == 200 and seconds < 1.0
    finally:
        hanging[0].release.set()
        thread.join(5)
        server.stop(2)
        system.close()


# ---- watchdog --------------------------------------------------------------------------------------

class StuckAtOnePlace(Worker):
    """Every thread it runs in blocks at the same line (like a call that never returns)."""

    name = "stuckling"
    max_step_seconds = 2.0

    def __init__(self):
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)

    def wait(self, stop, limit):
        stop.wait(0.001)

    def run_once(self):
        self.entered.release()
        self.release.wait(30)


@pytest.fixture
def watchdog_settings(tmp_path):
    return make_settings(tmp_path, THREAD_CHECK_INTERVAL=1.0, THREAD_STUCK_SECONDS=60.0,
                         THREAD_MAX_RESTARTS_PER_HOUR=10)


def test_stuck_is_detected_from_the_workers_declared_step_time(watchdog_settings):
    fake = FakeTime()
    dog = Watchdog(watchdog_settings, now=fake)
    worker = StuckAtOnePlace()
    dog.add(worker)
    dog.start()
    try:
        assert worker.entered.acquire(timeout=5)
        assert dog.stuck_after(worker) == 3.0  # THREAD_CHECK_INTERVAL 1 + declared step 2, not the global 60
        fake.value += 2.9
        dog.run_once()
        assert dog.health()[0]["restarts"] == 0
        fake.value += 0.2
        dog.run_once()
        assert dog.health()[0]["restarts"] == 1
    finally:
        worker.release.set()
        dog.stop(5)


def test_strategy_and_monitor_declare_room_for_one_broker_deadline(tmp_path):
    settings = make_settings(tmp_path, BROKER_CALL_TIMEOUT=4.0)
    assert broker_step_seconds(settings) == 18.0
    system = build_system(tmp_path / "sys", {"BROKER_CALL_TIMEOUT": 4.0})
    try:
        assert system.runner.max_step_seconds == 18.0
        assert system.monitor.max_step_seconds == 18.0
    finally:
        system.close()


def test_stuck_twice_at_the_same_call_raises_an_alarm_and_health_turns_red(watchdog_settings, tmp_path):
    fake = FakeTime()
    events = EventBus(replay_clock("2024-03-04T10:00:00"))
    seen = events.subscribe({EventKind.THREAD_RESTARTED, EventKind.THREAD_ALARM})
    dog = Watchdog(watchdog_settings, now=fake, events=events)
    worker = StuckAtOnePlace()
    dog.add(worker)
    dog.start()
    try:
        for restart in (1, 2):
            assert worker.entered.acquire(timeout=5)
            fake.value += 3.5
            dog.run_once()
            assert dog.health()[0]["restarts"] == restart
        row = dog.health()[0]
        assert "两次卡在同一调用" in row["alarm"] and "test_broker_hang.py:run_once" in row["alarm"]
        kinds = [e.kind for e in seen.drain()]
        assert kinds == [EventKind.THREAD_RESTARTED, EventKind.THREAD_ALARM, EventKind.THREAD_RESTARTED]
    finally:
        worker.release.set()
        dog.stop(5)

    system = build_system(tmp_path / "sys")
    system.watchdog = dog
    system.ctx.health = dog.health
    server = start_server(system)
    try:
        health = Client(server.port).get("/api/health").json["data"]
        assert health["status"] == "red"
        assert health["alarms"] == [row["alarm"]]
    finally:
        server.stop(2)
        system.close()


def test_shutdown_does_not_wait_on_a_hung_broker_call(tmp_path):
    """A manual buy through the daemon's own web server hangs in the broker; shutdown releases it at once:
    the request answers, the order is journaled unknown (reconciled at the next start), and the exit is quick."""
    from daemon.composition import build_daemon
    from persistence.config_store import ConfigStore
    from daemon_support import free_port
    from logger import SecretFilter

    port = free_port()
    settings = ConfigStore(Database(tmp_path / "config.db"), run_overrides={
        "DATA_SOURCE": "replay", "WEB_PORT": port, "BROKER_CALL_TIMEOUT": 120.0})
    daemon = build_daemon(settings, tmp_path / "data", tmp_path / "logs", SecretFilter(), tmp_path / "pool.json")
    guard = daemon.components["broker"]
    assert isinstance(guard, BrokerGuard)
    release, entered = threading.Event(), threading.Event()
    real_place = guard.inner.place_order

    def hung_place(request):
        entered.set()
        release.wait(60)
        return real_place(request)

    guard.inner.place_order = hung_place  # looked up on the instance at each call
    data = daemon.components["data"]
    data.set_watchlist(["600036.SH"])
    data.run_once()  # a quote to price the order with
    token = (tmp_path / "data" / "api_token").read_text(encoding="utf-8").strip()
    client = Client(port, token=token, timeout=10)
    thread, box = run_in_thread(lambda: client.post("/api/actions/execute_buy",
                                                    {"stock_code": "600036.SH", "volume": 100}))
    try:
        assert entered.wait(5), box
        seconds, code = elapsed(daemon.shutdown)
        assert code == 0 and seconds < 3.0
        thread.join(5)
        assert not thread.is_alive()
    finally:
        release.set()
    db = Database(tmp_path / "data" / "sim_trading.db")
    [row] = db.query("SELECT status, reason FROM orders")
    assert row["status"] == OrderStatus.UNKNOWN.value and "退出" in row["reason"]  # reconciled at the next start
    db.close()
