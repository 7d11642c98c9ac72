"""Issue 25 item 12: a full disk must not stop market data. A failed market.db write is reported through the
storage guard (「磁盘已满」, trading halted) like the journal's; quotes keep flowing; the unwritten bars are written
and trading resumes as soon as space is back. Real SQLite files; the disk-full error is injected."""
import sqlite3
from datetime import date, datetime, timedelta

from market.bar_store import BarStore, DailyBar
from daemon.daemon_workers import DataWorker
from data_manager import DataManager
from data_test_support import make_settings
from core.events import EventBus, EventKind
from market.clock import ReplayClock
from core.models import Quote
from market.quote_hub import QuoteHub
from market.source_base import SourceStep
from persistence.storage import Database
from persistence.health import StorageGuard
from trading_support import FakeTime
from core.trading_state import TradingState

T0 = datetime(2025, 8, 5, 10, 0, 0)  # a Tuesday, continuous session
CODE = "600000.SH"
WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE")


class FillableDisk:
    """Wraps a Database's connection: while `full`, every write raises SQLite's own disk-full error."""

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn
        self.full = False
        self.refused = 0

    def _check(self, sql: str) -> None:
        if self.full and sql.lstrip().upper().startswith(WRITES):
            self.refused += 1
            raise sqlite3.OperationalError("database or disk is full")

    def execute(self, sql, params=()):
        self._check(sql)
        return self._conn.execute(sql, params)

    def executemany(self, sql, rows):
        self._check(sql)
        return self._conn.executemany(sql, rows)

    def __getattr__(self, name):
        return getattr(self._conn, name)


class TickingSource:
    """One fresh quote per step (price +0.01) and, every step, the bar of the previous day."""

    name, label, connected = "test", "测试行情", True

    def __init__(self, clock):
        self._clock = clock
        self.steps = 0

    def start(self, publish):
        pass

    def set_watchlist(self, codes):
        pass

    def run_once(self) -> SourceStep:
        self.steps += 1
        quote = Quote(CODE, round(13.0 + self.steps / 100, 2), 13.13, self._clock.now(), self.name)
        bar = DailyBar(CODE, date(2025, 8, 4), 13.0, 13.4, 12.9, 13.1 + self.steps / 100, 1e6)
        return SourceStep(wait=1.0, quotes=[quote], bars=[bar])

    def stock_name(self, code):
        return ""

    def close(self):
        pass


def test_a_full_disk_is_reported_quotes_keep_flowing_and_everything_resumes_when_space_returns(tmp_path):
    clock = ReplayClock(T0)
    settings = make_settings(tmp_path)
    market_db = Database(tmp_path / "market.db")
    trading_db = Database(tmp_path / "sim_trading.db")
    disk = FillableDisk(market_db._conn)
    market_db._conn = disk
    bars = BarStore(market_db)
    hub = QuoteHub(settings, clock)
    manager = DataManager(settings, clock, hub, bars, TickingSource(clock))
    state = TradingState(trading_db, clock)
    events = EventBus(clock)
    storage_events = events.subscribe({EventKind.STORAGE_FAILURE})
    guard = StorageGuard(state, events, lambda: (trading_db, market_db), tmp_path, lambda: 0)
    worker = DataWorker(manager, lambda: [CODE], now=FakeTime())

    worker.run_once()
    assert bars.last_bar(CODE).close == 13.11
    disk.full = True
    prices = []
    for _ in range(15):  # 15 s of a full disk
        clock.advance(1.0)
        worker.run_once()  # never raises: the data thread is not restarted, let alone abandoned
        prices.append(hub.latest(CODE).price)
    assert prices == [round(13.02 + i / 100, 2) for i in range(15)]  # a fresh quote every second
    snapshot = state.snapshot()
    assert snapshot["state"] == "halted" and snapshot["source"] == "storage"
    assert snapshot["reason"].startswith("磁盘已满：写入 market.db 失败（database or disk is full）")
    failures = storage_events.drain()
    assert [e.data.get("problem") for e in failures] == ["full"]  # reported once, not at every step
    assert bars.last_bar(CODE).close == 13.11  # nothing written meanwhile
    assert "日线写入行情数据库 market.db 失败" in manager.status()["last_error"]

    guard.check()  # free space is fine but a real write still fails: the halt stands
    assert state.snapshot()["state"] == "halted"

    disk.full = False  # space is back
    guard.check()
    assert state.snapshot()["state"] == "running"
    assert [e.message for e in storage_events.drain()] == ["磁盘空间已恢复，已自动恢复交易"]
    clock.advance(1.0)
    worker.run_once()
    assert hub.latest(CODE).price == 13.17
    assert bars.last_bar(CODE).close == 13.27  # the queued bar (newest version) is written at the next step
    market_db.close()
    trading_db.close()


def test_a_failed_history_rewrite_is_retried_until_it_lands(tmp_path):
    clock = ReplayClock(T0)
    market_db = Database(tmp_path / "market.db")
    disk = FillableDisk(market_db._conn)
    market_db._conn = disk
    bars = BarStore(market_db)
    settings = make_settings(tmp_path)
    history = [DailyBar(CODE, date(2025, 8, 1) + timedelta(days=i), 13.0, 13.4, 12.9, 13.2, 1e6) for i in range(3)]

    class HistorySource(TickingSource):
        def run_once(self):
            step = super().run_once()
            return SourceStep(wait=1.0, quotes=step.quotes, history={CODE: history} if self.steps == 1 else {})

    manager = DataManager(settings, clock, QuoteHub(settings, clock), bars, HistorySource(clock))
    disk.full = True
    manager.run_once()
    manager.run_once()
    assert bars.bars(CODE) == [] and disk.refused == 2
    disk.full = False
    manager.run_once()
    assert bars.bars(CODE) == history
    market_db.close()
