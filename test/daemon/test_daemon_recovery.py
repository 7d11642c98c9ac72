"""Crash recovery of the whole daemon: `python main.py` trades on replayed real bars, is killed with SIGKILL
at seeded random moments and restarted each time. From its SQLite files: no order reached the broker twice,
every broker fill is recorded exactly once, the persisted episode state of every position survives each
restart unchanged, market time never runs backwards, and every database passes PRAGMA integrity_check.
Also the unit-level rule that a signal caught mid-execution gives its episode flag back when no order went out."""
from __future__ import annotations

import bisect
import csv
import json
import os
import random
import time
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from daemon_support import DAILY, daily_codes, integrity, launch, query, start_ready, wait_until

SEED = int(os.environ.get("DAEMON_CRASH_SEED", "20240607"))  # another seed: other kill moments
# When each round's SIGKILL comes: a random delay once trading, a random moment of the start-up (imports,
# migrations, recovery), or a few random milliseconds after a new order was journaled (the order pipeline
# is then busy sending it, booking its fill, writing positions and trade records).
KILL_PLAN = ("delay", "on_order", "start_up", "on_order", "delay")
FIRST_REPLAY_INDEX = 60  # market.replay_source.DEFAULT_START_INDEX: the 61st day of the data
# Parameters that make the rules fire often on real bars, so that the kills hit a busy order pipeline.
RULES = {"ENABLE_MA_FILTER": False, "INITIAL_TAKE_PROFIT_RATIO": 0.03, "STOP_LOSS_RATIO": -0.04,
         "BUY_GRID_LEVELS": [1.0, 0.98, 0.96], "REPLAY_TICKS_PER_DAY": 10, "MONITOR_INTERVAL": 0.2,
         "SIGNAL_MAX_AGE": 3600, "ORDER_CHECK_INTERVAL": 0.5, "POSITION_SYNC_INTERVAL": 0.5,
         "THREAD_CHECK_INTERVAL": 0.5}
TRADING = {**RULES, "ENABLE_AUTO_TRADING": True}
OBSERVING = {**RULES, "ENABLE_AUTO_TRADING": False}  # with a replay so slow that only one tick comes
TRADING_SPEED, OBSERVING_SPEED = "0.4", "86400"
EPISODE_FIELDS = ("volume", "cost_price", "base_cost_price", "open_date", "profit_triggered", "used_add_levels")

pytestmark = pytest.mark.skipif(not DAILY.is_dir(), reason=f"real daily bars not found at {DAILY}")


@dataclass
class Snapshot:
    """What the killed daemon left in its files."""

    positions: dict[str, dict]  # code -> persisted episode fields (+ highest_price)
    unbooked: set[str]  # codes with a broker fill not yet applied to the position table
    reverted: dict[str, dict]  # code -> flags a restart must give back (signal executing, no order sent)
    last_started: date | None


def _bars() -> dict[str, dict[date, dict]]:
    bars = {}
    for path in DAILY.glob("*.csv"):
        with open(path, newline="", encoding="utf-8") as handle:
            bars[path.stem] = {date.fromisoformat(r["date"]): r for r in csv.DictReader(handle)}
    return bars


def _snapshot(data: Path) -> Snapshot:
    trading = data / "sim_trading.db"
    positions = {}
    for row in query(trading, "SELECT * FROM positions"):
        positions[row["stock_code"]] = {
            "volume": row["volume"], "cost_price": row["cost_price"], "base_cost_price": row["base_cost_price"],
            "open_date": row["open_date"], "profit_triggered": bool(row["profit_triggered"]),
            "used_add_levels": json.loads(row["used_add_levels"]), "highest_price": row["highest_price"]}
    unbooked = {r["stock_code"] for r in query(
        trading, "SELECT stock_code FROM sim_fills WHERE fill_id NOT IN (SELECT fill_id FROM position_fills)")}
    reverted: dict[str, dict] = {}
    for signal in query(trading, "SELECT * FROM signals WHERE status='executing' AND rule IN "
                                 "('take_profit', 'add_position')"):
        order = query(trading, "SELECT client_id FROM orders WHERE signal_id=? ORDER BY seq DESC LIMIT 1",
                      (signal["id"],))
        at_broker = query(trading, "SELECT status FROM sim_orders WHERE client_id=?",
                          (order[0]["client_id"],)) if order else []
        if at_broker and at_broker[0]["status"] != "rejected":
            continue  # the order went out: the flag stays
        change = reverted.setdefault(signal["stock_code"], {})
        if signal["rule"] == "take_profit":
            change["profit_triggered"] = False
        else:
            change.setdefault("drop_levels", set()).add(signal["level_index"])
    return Snapshot(positions, unbooked, reverted, _last_started(data))


def _last_started(data: Path) -> date | None:
    """The last replay day started (market.replay_source.ReplayProgress in market.db)."""
    market = data / "market.db"
    tables = {r[0] for r in query(market, "SELECT name FROM sqlite_master WHERE type='table'")} \
        if market.exists() else set()
    rows = query(market, "SELECT day FROM replay_progress") if "replay_progress" in tables else []
    return max((date.fromisoformat(r["day"]) for r in rows), default=None)


def _expected_after_restart(snap: Snapshot, code: str, open_price: float | None) -> dict:
    before = dict(snap.positions[code])
    change = snap.reverted.get(code, {})
    if "profit_triggered" in change:
        before["profit_triggered"] = False
    before["used_add_levels"] = sorted(set(before["used_add_levels"]) - change.get("drop_levels", set()))
    # the one tick the observing daemon gets is the resume day's open: the highest price may only rise to it
    before["highest_price"] = max(before["highest_price"], open_price) if open_price else before["highest_price"]
    return before


def _observe(root: Path, snap: Snapshot, days: list[date], bars: dict) -> int:
    """Restart with auto-trading off and a replay that delivers just the resume day's open; compare the
    loaded positions with the killed daemon's files. Returns how many positions were compared."""
    resume = days[bisect.bisect_right(days, snap.last_started)] if snap.last_started else days[FIRST_REPLAY_INDEX]
    daemon = start_ready(root, ["--replay-data", str(DAILY), "--replay-speed", OBSERVING_SPEED,
                                "--stock-pool", str(root / "pool.json")], OBSERVING, name="observe")
    try:
        progress = wait_until(lambda: _last_started(daemon.data_dir) != snap.last_started
                              and _last_started(daemon.data_dir), 30, "the replay to resume", daemon)
        assert progress == resume, "the replay resumes on the day after the last day started"
        opens = {code: round(float(bars[code][resume]["open"]), 2) for code in snap.positions
                 if resume in bars.get(code, {})}

        def loaded():
            shown = {p["stock_code"]: p for p in daemon.api("/api/positions")["positions"]}
            ticked = all(shown.get(code) is None or (shown[code]["last_update"] or "").startswith(resume.isoformat())
                         for code in opens)
            return (shown,) if ticked else None  # a tuple: an account left with no position is truthy too
        shown, = wait_until(loaded, 30, "the resume day's first tick to reach the positions", daemon)
        traded_now = {r["stock_code"] for r in query(daemon.data_dir / "sim_trading.db",
                                                     "SELECT stock_code FROM orders WHERE trading_day=?",
                                                     (resume.isoformat(),))}
        skipped = snap.unbooked | traded_now  # a recovered fill or a re-priced sell legitimately changes them
        assert set(shown) - skipped == set(snap.positions) - skipped, "no position appears or vanishes on restart"
        compared = 0
        for code in sorted(set(snap.positions) - skipped):
            expected = _expected_after_restart(snap, code, opens.get(code))
            got = shown[code]
            assert {k: got[k] for k in EPISODE_FIELDS} == {k: expected[k] for k in EPISODE_FIELDS}, code
            assert got["highest_price"] == expected["highest_price"], code
            compared += 1
        code, seconds = daemon.terminate(10)
        assert code == 0 and seconds < 10, daemon.output()
    finally:
        daemon.stop_quietly()
    assert set(integrity(root / "data").values()) == {"ok"}
    return compared


def _fill_count(data: Path) -> int:
    return query(data / "sim_trading.db", "SELECT COUNT(*) FROM sim_fills")[0][0]


def _max_seq(data: Path) -> int:
    return query(data / "sim_trading.db", "SELECT COALESCE(MAX(seq), 0) FROM orders")[0][0]


def _kill_trading_round(root: Path, rng: random.Random, when: str) -> None:
    args = ["--replay-data", str(DAILY), "--replay-speed", TRADING_SPEED, "--stock-pool", str(root / "pool.json")]
    data = root / "data"
    if when == "start_up":
        daemon = launch(root, args, TRADING, name="trade")
        time.sleep(rng.uniform(0.5, 2.5))
    else:
        daemon = start_ready(root, args, TRADING, name="trade")
        if when == "delay":
            fills = _fill_count(data)
            wait_until(lambda: _fill_count(data) >= fills + 2, 60, "two new fills", daemon)
            time.sleep(rng.uniform(0.2, 2.5))
        else:
            seen = _max_seq(data)
            deadline = time.monotonic() + 60
            while _max_seq(data) == seen:  # a tight poll: the kill must land inside the order's short life
                assert time.monotonic() < deadline and daemon.poll() is None, daemon.output()
                time.sleep(0.001)
            time.sleep(rng.uniform(0.0, 0.01))
    try:
        assert daemon.poll() is None, f"daemon ended before the kill:\n{daemon.output()}"
        assert daemon.kill() == -9
    finally:
        daemon.stop_quietly()
    assert set(integrity(root / "data").values()) == {"ok"}


def test_sigkill_at_random_moments_loses_nothing_and_sends_nothing_twice(tmp_path):
    rng = random.Random(SEED)
    (tmp_path / "pool.json").write_text(json.dumps(daily_codes()), encoding="utf-8")
    bars = _bars()
    days = sorted(set().union(*(set(b) for b in bars.values())))
    compared = 0
    resumes = []
    for when in KILL_PLAN:
        _kill_trading_round(tmp_path, rng, when)
        snap = _snapshot(tmp_path / "data")
        resumes.append(snap.last_started)
        compared += _observe(tmp_path, snap, days, bars)
    assert compared >= 3, "the kills must leave open positions to compare"
    assert all(a < b for a, b in zip(resumes, resumes[1:])), f"market time never runs backwards: {resumes}"
    _check_books(tmp_path / "data")


def _check_books(data: Path) -> None:
    """After the last (clean) restart: journal, fill ledger, positions and the sim broker's book agree."""
    db = data / "sim_trading.db"
    broker_orders = {r["client_id"]: r for r in query(db, "SELECT * FROM sim_orders")}
    journal = {r["client_id"]: r for r in query(db, "SELECT * FROM orders")}
    assert len(broker_orders) == len(query(db, "SELECT * FROM sim_orders")), "each client id once at the broker"
    assert set(broker_orders) <= set(journal), "nothing reached the broker without being journaled first"
    for client_id, entry in journal.items():
        sent = broker_orders.get(client_id)
        if sent is None:  # journaled, then the process died before sending: never sent, never re-sent
            assert entry["status"] == "rejected", dict(entry)
            continue
        assert (entry["status"], entry["filled_volume"]) == (sent["status"], sent["filled_volume"]), client_id
    twice = query(db, "SELECT signal_id, COUNT(*) FROM orders WHERE signal_id IS NOT NULL AND parent_client_id=''"
                      " GROUP BY signal_id HAVING COUNT(*) > 1")
    assert [tuple(r) for r in twice] == [], "no signal was sent twice"

    fills = query(db, "SELECT rowid, * FROM sim_fills ORDER BY rowid")
    records = {r["fill_id"]: r for r in query(db, "SELECT * FROM trade_records")}
    booked = {r["fill_id"] for r in query(db, "SELECT fill_id FROM position_fills")}
    assert len(fills) >= 2 * KILL_PLAN.count("delay"), "the daemon traded between the kills"
    assert set(records) == {f["fill_id"] for f in fills} == booked, "every broker fill recorded exactly once"
    assert len(query(db, "SELECT fill_id FROM trade_records")) == len(fills)
    for fill in fills:
        record = records[fill["fill_id"]]
        for key in ("client_id", "order_id", "stock_code", "side", "price", "volume", "commission", "stamp_duty",
                    "transfer_fee"):
            assert record[key] == fill[key], (fill["fill_id"], key)
    times = [datetime.fromisoformat(f["time"]) for f in fills]
    assert times == sorted(times), "market time of the fills never runs backwards"
    _check_t_plus_one(fills)

    sim_positions = {r["stock_code"]: r for r in query(db, "SELECT * FROM sim_positions WHERE volume > 0")}
    positions = {r["stock_code"]: r for r in query(db, "SELECT * FROM positions")}
    assert {c: (p["volume"], p["cost_amount"]) for c, p in positions.items()} == \
        {c: (p["volume"], p["cost_amount"]) for c, p in sim_positions.items()}
    account = query(db, "SELECT * FROM sim_account")[0]
    cash = Decimal(str(account["initial_balance"]))
    for fill in fills:
        amount = Decimal(str(round(fill["price"] * fill["volume"], 2)))
        fees = sum(Decimal(str(fill[k])) for k in ("commission", "stamp_duty", "transfer_fee"))
        cash += amount - fees if fill["side"] == "sell" else -(amount + fees)
    assert Decimal(str(account["cash"])) + Decimal(str(account["frozen_cash"])) == cash
    assert set(integrity(data).values()) == {"ok"}


def _check_t_plus_one(fills) -> None:
    """No sell ever used shares bought the same day."""
    held: dict[str, int] = {}
    bought_today: dict[tuple[str, str], int] = {}
    for fill in fills:
        code, day = fill["stock_code"], fill["time"][:10]
        if fill["side"] == "buy":
            held[code] = held.get(code, 0) + fill["volume"]
            bought_today[code, day] = bought_today.get((code, day), 0) + fill["volume"]
        else:
            assert fill["volume"] <= held.get(code, 0) - bought_today.get((code, day), 0), dict(fill)
            held[code] -= fill["volume"]


# ---- unit level: the start-up recovery of a signal caught mid-execution ---------------------------------

def test_signal_caught_before_its_order_went_out_gives_its_episode_flags_back(tmp_path):
    from market.clock import ReplayClock
    from core.models import Rule, Side, Signal, SignalStatus
    from core.signal_store import SignalStore
    from core.strategy_runner import StrategyRunner
    from trading_support import QuoteBoard, build_core, make_settings

    clock = ReplayClock(datetime(2024, 3, 4, 10, 0))
    settings = make_settings(tmp_path)
    quotes = QuoteBoard(clock)
    quotes.set("600036.SH", 10.00, 10.00)
    core = build_core(tmp_path / "t.db", settings, clock, quotes)
    core.executor.buy_stock("600036.SH", volume=1000, price=10.00, rule=Rule.MACD_BUY)
    quotes.set("600036.SH", 10.60, 10.00)
    store = SignalStore(core.db, clock)
    take = store.add(Signal(stock_code="600036.SH", rule=Rule.TAKE_PROFIT, volume=600, trigger_price=10.60,
                            observed_price=10.60, created_at=clock.now()))
    add = store.add(Signal(stock_code="600036.SH", rule=Rule.ADD_POSITION, volume=1000, trigger_price=9.30,
                           observed_price=9.30, created_at=clock.now(), level_index=1))
    # the state a kill leaves between "flag persisted" and "order journaled": both signals executing
    for signal in (take, add):
        assert store.claim(signal.id)
    core.positions.mark_profit_triggered("600036.SH")
    core.positions.mark_add_level_used("600036.SH", 1)
    # ...and, for the add signal, journaled but killed before the broker got it
    core.executor.journal.open_order("600036.SH", Side.BUY, 1000, 9.30, Rule.ADD_POSITION, add.id)

    core.executor.recover()  # as daemon/composition.py: the executor first, then the runner
    runner = StrategyRunner(store, core.positions, core.executor, quotes, settings, clock)
    runner.recover()

    position = core.positions.get("600036.SH")
    assert position.profit_triggered is False
    assert position.used_add_levels == (0,)
    assert store.get(take.id).status is SignalStatus.REJECTED
    assert store.get(add.id).status is SignalStatus.REJECTED
    assert core.executor.journal.latest_for_signal(add.id).status.value == "rejected"
    assert [o.client_id for o in core.sim.query_orders()] == [core.executor.journal.entries()[-1].client_id]
    reloaded = core.positions.__class__(core.db, settings, clock, "simulation").get("600036.SH")
    assert (reloaded.profit_triggered, reloaded.used_add_levels) == (False, (0,))
