"""Many threads placing, cancelling and matching orders at once leave the books consistent and never hang."""
import random
import threading
from collections import Counter
from datetime import datetime

from core.models import OrderRejected, OrderStatus, Side
from trading_support import QuoteBoard, build_core, make_settings, replay_clock

CODES = ("600036.SH", "000001.SZ", "600000.SH", "300750.SZ")
PREV_CLOSE = 10.00
THREADS, ORDERS_PER_THREAD = 8, 125
JOIN_SECONDS = 60


def test_eight_threads_place_and_cancel_1000_orders_consistently(tmp_path):
    clock = replay_clock("2024-02-08 10:00:00")
    quotes = QuoteBoard(clock)
    settings = make_settings(tmp_path, MAX_ORDERS_PER_DAY=10_000, MAX_TOTAL_POSITION_RATIO=1.0,
                             SELL_ORDER_TIMEOUT=5.0, BUY_ORDER_TIMEOUT=5.0)
    core = build_core(tmp_path / "sim_trading.db", settings, clock, quotes)
    # This test is about locking and bookkeeping, not power-cut durability: skip the fsync per commit
    # (synchronous=FULL) that would make ~5,000 commits take most of the test's time.
    core.db.execute("PRAGMA synchronous=NORMAL")
    for code in CODES:  # day 1: holdings that become sellable on day 2
        quotes.set(code, PREV_CLOSE, PREV_CLOSE)
        core.executor.buy_stock(code, volume=9_000)
    clock.set(datetime(2024, 2, 19, 10, 0))
    start_cash = core.sim.query_asset().cash
    start_volume = {p.stock_code: p.volume for p in core.sim.query_positions()}
    start_fills = len(core.sim.query_trades())

    outcomes = Counter()
    outcome_lock = threading.Lock()
    errors = []
    done = threading.Event()

    def trader(seed: int) -> None:
        rng = random.Random(seed)
        mine = []
        try:
            for _ in range(ORDERS_PER_THREAD):
                code = rng.choice(CODES)
                price = round(PREV_CLOSE + rng.randint(-30, 30) * 0.01, 2)
                volume = rng.choice((100, 200, 300))
                try:
                    if rng.random() < 0.5:
                        order = core.executor.buy_stock(code, volume=volume, price=price)
                    else:
                        order = core.executor.sell_stock(code, volume, price=price)
                    mine.append(order.client_id)
                    result = "placed"
                except OrderRejected as exc:
                    result = exc.code
                with outcome_lock:
                    outcomes[result] += 1
                # the market moves: this thread matches resting orders of every thread
                core.sim.on_quote(quotes.set(code, round(PREV_CLOSE + rng.randint(-30, 30) * 0.01, 2), PREV_CLOSE))
                if mine and rng.random() < 0.4:
                    try:
                        core.executor.cancel_order(rng.choice(mine))
                    except OrderRejected:
                        pass  # already filled or cancelled by someone else: fine
        except Exception as exc:  # surfaced below: a thread must not die silently
            errors.append(exc)

    def supervisor() -> None:
        try:
            while not done.wait(0.005):  # paces the loop (the orders thread's interval), returns at the end
                clock.advance(1)
                core.executor.check_open_orders()  # timeouts, cancels and re-priced sells meanwhile
                core.positions.sync()
                core.executor.account()
        except Exception as exc:
            errors.append(exc)

    traders = [threading.Thread(target=trader, args=(seed,), name=f"trader-{seed}") for seed in range(THREADS)]
    watcher = threading.Thread(target=supervisor, name="orders")
    for thread in traders + [watcher]:
        thread.start()
    for thread in traders:
        thread.join(JOIN_SECONDS)
    done.set()
    watcher.join(JOIN_SECONDS)
    assert not any(t.is_alive() for t in traders + [watcher]), "a thread hung: deadlock"
    assert errors == []
    assert sum(outcomes.values()) == THREADS * ORDERS_PER_THREAD and outcomes["placed"] > 500

    core.executor.cancel_all()
    sim_orders = {o.client_id: o for o in core.sim.query_orders()}
    assert all(o.status.is_terminal for o in sim_orders.values())
    journal = core.executor.list_orders()
    assert all(OrderStatus(row["status"]).is_terminal for row in journal)
    for row in journal:  # the journal agrees with the broker order by order
        broker = sim_orders[row["client_id"]]
        assert (row["status"], row["filled_volume"]) == (broker.status.value, broker.filled_volume)

    fills = core.sim.query_trades()[start_fills:]
    bought, sold = Counter(), Counter()
    cash = start_cash
    for f in fills:
        if f.side is Side.BUY:
            bought[f.stock_code] += f.volume
            cash -= f.amount + f.fees
        else:
            sold[f.stock_code] += f.volume
            cash += f.amount - f.fees
    asset = core.sim.query_asset()
    assert asset.frozen_cash == 0.0
    assert round(cash, 2) == asset.cash  # initial − buys − fees + sells
    broker = {p.stock_code: p for p in core.sim.query_positions()}
    for code in CODES:
        assert broker[code].volume - start_volume[code] == bought[code] - sold[code]
        # T+1: today's buys are not sellable; nothing is left reserved once every order has ended
        assert broker[code].available == start_volume[code] - sold[code]
        ours = core.positions.get(code)
        assert (ours.volume, ours.available, core.positions.frozen(code)) == (
            broker[code].volume, broker[code].available, 0)
    records = core.executor.trade_records(start=datetime(2024, 2, 19).date())
    assert sorted(r["fill_id"] for r in records) == sorted(f.fill_id for f in fills)
    assert len(fills) > 100


def test_fill_listeners_that_trade_back_do_not_deadlock(tmp_path):
    """A grid-like listener places an order from inside the fill callback while other threads trade."""
    clock = replay_clock("2024-02-08 10:00:00")
    quotes = QuoteBoard(clock)
    settings = make_settings(tmp_path, MAX_ORDERS_PER_DAY=10_000, MAX_TOTAL_POSITION_RATIO=1.0)
    core = build_core(tmp_path / "sim_trading.db", settings, clock, quotes)
    core.db.execute("PRAGMA synchronous=NORMAL")  # see above
    for code in CODES:
        quotes.set(code, PREV_CLOSE, PREV_CLOSE)
    follow_ups = Counter()
    errors = []

    def follow_up(fill, rule):
        if fill.side is Side.BUY and fill.volume == 100:  # answer each small buy with one 200-share buy
            try:
                core.executor.buy_stock(fill.stock_code, volume=200, price=PREV_CLOSE)
                follow_ups[fill.stock_code] += 1
            except Exception as exc:
                errors.append(exc)

    core.executor.add_fill_listener(follow_up)

    def trader(code: str) -> None:
        try:
            for _ in range(25):
                core.executor.buy_stock(code, volume=100, price=PREV_CLOSE)
                core.sim.on_quote(quotes.set(code, PREV_CLOSE, PREV_CLOSE))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=trader, args=(code,)) for code in CODES]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_SECONDS)
    assert not any(t.is_alive() for t in threads), "a thread hung: deadlock"
    assert errors == []
    assert follow_ups == Counter({code: 25 for code in CODES})
    for code in CODES:
        assert core.positions.get(code).volume == 25 * 100 + 25 * 200
    assert len(core.executor.trade_records()) == 200
