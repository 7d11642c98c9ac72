"""A backtest that starts from an account's state (issue 20 §4, "with the account's starting state"): cash and
held positions with their rule state, so `compare --start` in the middle of an account's life backtests what
the account held; MACD entries only where the account makes them (its pool without its blacklist)."""
from __future__ import annotations

import pytest

import config
import strategy
from backtest import run_backtest
from backtesting.compare import run_compare
from backtesting.engine import StartingState
from core.models import Rule, Side
from core.order_journal import OrderJournal
from core.signal_store import SignalStore
from sim_trader import MIGRATIONS as SIM_MIGRATIONS
from core.stock_params import MIGRATIONS as STOCK_PARAMS_MIGRATIONS
from persistence.storage import Database, migrate
from test_backtest_scenarios import CODE, E, E1, E2, FALLING_E, PREFIX, QUIET_E, trades_of, write_bars

GAP_BELOW_STOP = (8.70, 8.90, 8.65, 8.80)  # E1 after FALLING_E (close 9.60, limit-down 8.64): under the stop
# bought by the account on E at 10.00: 20000.00 + commission 6.00 + transfer 0.20 = 20006.20, cost 10.0031
BOUGHT_ON_E = strategy.apply_buy(None, CODE, 10.00, 2000, 6.20, E)
CASH_AFTER_BUY = 1_000_000 - 20_006.20
STOP_SELL = (E1, Side.SELL, 8.70, 2000, 17400.00, 14.09, Rule.STOP_LOSS)  # commission 5.22, stamp 8.70, 0.17


def run(folder, start, starting=None, no_entry=(), **overrides):
    return run_backtest(folder, {**config.DEFAULTS, **overrides}, start=start, plot=False, starting=starting,
                        no_entry=no_entry)


def test_a_held_position_follows_the_rules_from_the_first_day(tmp_path):
    write_bars(tmp_path / "bars", CODE, PREFIX + [FALLING_E, GAP_BELOW_STOP])
    backtest = run(tmp_path / "bars", E1, StartingState(CASH_AFTER_BUY, (BOUGHT_ON_E,)))
    assert trades_of(backtest) == [STOP_SELL]
    result = backtest.result
    assert result.initial_capital == 999_193.80  # 979,993.80 cash + 2000 × E's close 9.60
    assert result.equity[-1].total == 997_379.71 == round(CASH_AFTER_BUY + 17_400.00 - 14.09, 2)
    episode = result.closed_episodes[0]
    assert (episode.open_date, episode.invested, episode.proceeds) == (E, 20_006.20, 17_385.91)
    assert result.unseeded == []


def test_the_highest_price_counts_the_bars_after_the_open_day_only(tmp_path):
    """E's own high (10.50) may have come before the account's buy; E1's high 10.40 came after it. E2 stays
    between the stop and the take-profit (10.6033): nothing trades, the position keeps highest 10.40."""
    write_bars(tmp_path / "bars", CODE, PREFIX + [(10.00, 10.50, 9.95, 10.00), (10.00, 10.40, 9.95, 10.20),
                                                 (10.20, 10.25, 10.10, 10.15)])
    result = run(tmp_path / "bars", E2, StartingState(CASH_AFTER_BUY, (BOUGHT_ON_E,))).result
    assert result.trades == [] and result.open_positions[0].highest_price == 10.40
    assert result.open_positions[0].volume == 2000 and result.open_positions[0].cost_price == BOUGHT_ON_E.cost_price


def test_a_starting_position_without_data_is_named_and_left_out(tmp_path):
    write_bars(tmp_path / "bars", CODE, PREFIX + [QUIET_E, QUIET_E])
    elsewhere = strategy.apply_buy(None, "600519.SH", 1500.0, 100, 5.0, E)
    result = run(tmp_path / "bars", E1, StartingState(500_000.0, (elsewhere,)), ENABLE_MACD_BUY=False).result
    assert result.unseeded == ["600519.SH"] and result.initial_capital == 500_000.0


def test_no_entry_codes_get_no_macd_entry(tmp_path):
    write_bars(tmp_path / "bars", CODE, PREFIX + [QUIET_E, QUIET_E])
    assert trades_of(run(tmp_path / "bars", None))[0][-1] is Rule.MACD_BUY  # the entry on E, as usual
    assert run(tmp_path / "bars", None, no_entry={CODE}).result.trades == []


BLACKLISTED = "600000.SH"


@pytest.fixture
def account(tmp_path):
    """A simulated account that bought CODE on E (MACD) and stopped out on E1, and blacklisted BLACKLISTED
    (whose own MACD cross would buy it on E1)."""
    folder = tmp_path / "account"
    folder.mkdir()
    (folder / "stock_pool.json").write_text(f'["{CODE}", "{BLACKLISTED}"]', encoding="utf-8")
    db = Database(folder / "sim_trading.db")
    OrderJournal(db, None, "simulation")
    SignalStore(db, None)
    migrate(db, "sim_trader", SIM_MIGRATIONS)
    migrate(db, "stock_params", STOCK_PARAMS_MIGRATIONS)
    db.execute("INSERT INTO sim_account(id, initial_balance, cash, frozen_cash, day, order_seq)"
               " VALUES(1, 1000000, 997379.71, 0, ?, 2)", (E1.isoformat(),))
    db.execute("INSERT INTO stock_blacklist(stock_code, changed_at) VALUES(?, ?)", (BLACKLISTED, "2024-04-01"))
    order_sql = ("INSERT INTO orders(client_id, order_id, stock_code, side, volume, price, status, filled_volume,"
                 " filled_amount, rule, origin_rule, mode, created_at, updated_at, trading_day)"
                 " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
    fill_sql = ("INSERT INTO trade_records(fill_id, order_id, client_id, stock_code, side, price, volume, amount,"
                " commission, stamp_duty, transfer_fee, fees, strategy, mode, trade_time, trading_day)"
                " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
    for client, side, price, amount, fees, split, rule, day in [
            ("c1", "buy", 10.00, 20000.0, 6.20, (6.0, 0.0, 0.2), "macd_buy", E),
            ("c2", "sell", 8.70, 17400.0, 14.09, (5.22, 8.70, 0.17), "stop_loss", E1)]:
        db.execute(order_sql, (client, f"o{client}", CODE, side, 2000, price, "filled", 2000, amount, rule, rule,
                               "simulation", f"{day}T09:30:05", f"{day}T09:30:06", day.isoformat()))
        db.execute(fill_sql, (f"f{client}", f"o{client}", client, CODE, side, price, 2000, amount, *split, fees, rule,
                              "simulation", f"{day}T09:30:06", day.isoformat()))
    db.close()
    return folder


@pytest.fixture
def bars(tmp_path):
    folder = tmp_path / "bars"
    write_bars(folder, CODE, PREFIX + [FALLING_E, GAP_BELOW_STOP])
    write_bars(folder, BLACKLISTED, [PREFIX[0]] + PREFIX + [QUIET_E])  # its cross is a day later: entry on E1
    return folder


def test_compare_from_the_middle_starts_from_what_the_account_held(account, bars):
    comparison = run_compare(account, bars, start=E1, end=E1)
    assert [(row.cause, row.stock_code, row.side, row.rule, row.backtest_volume, row.account_volume,
             row.slippage_cny) for row in comparison.rows] == [
        ("matched", CODE, "sell", "stop_loss", 2000, 2000, 0.0)]  # and no entry into the blacklisted stock
    assert comparison.starting["cash"] == CASH_AFTER_BUY
    assert comparison.starting["cash_source"] == "模拟账户的初始资金"
    assert comparison.starting["initial_capital"] == 999_193.80
    assert comparison.starting["positions"] == [{
        "stock_code": CODE, "volume": 2000, "cost_price": 10.0031, "open_date": E.isoformat(),
        "profit_triggered": False, "used_add_levels": []}]


def test_the_blacklisted_stock_would_be_bought_without_the_blacklist(bars, tmp_path):
    """The fixture's blacklisted stock really has an entry on E1: the blacklist is what keeps it out."""
    trades = run(bars, E1).result.trades
    assert [(t.day, t.stock_code, t.side, t.rule) for t in trades] == [(E1, BLACKLISTED, Side.BUY, Rule.MACD_BUY)]


def test_a_live_account_starts_from_its_last_snapshot_and_skips_positions_older_than_its_records(tmp_path):
    """No simulated account record: the cash is the latest close snapshot before the start plus the fills after
    it. A sell of a stock the records never bought (found at the broker) neither crashes nor invents a position."""
    from jobs.account_snapshots import AccountSnapshots
    from backtesting.compare import starting_state
    from core.models import Asset

    db = Database(tmp_path / "trading.db")
    OrderJournal(db, None, "live")
    SignalStore(db, None)
    AccountSnapshots(db).record(E, Asset(cash=950_000.00, frozen_cash=1_000.00, market_value=19_200.0,
                                         total_asset=970_200.00))
    fill_sql = ("INSERT INTO trade_records(fill_id, order_id, client_id, stock_code, side, price, volume, amount,"
                " commission, stamp_duty, transfer_fee, fees, strategy, mode, trade_time, trading_day)"
                " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
    for fill_id, code, side, price, volume, amount, fees, day in [
            ("f1", CODE, "buy", 10.00, 2000, 20000.0, 6.20, E),  # inside the snapshot of E
            ("f2", "000001.SZ", "sell", 11.00, 500, 5500.0, 8.40, E),  # held before the records began
            ("f3", CODE, "buy", 9.60, 100, 960.0, 5.01, E1)]:  # after the snapshot: counted
        db.execute(fill_sql, (fill_id, f"o{fill_id}", f"c{fill_id}", code, side, price, volume, amount, fees, 0.0,
                              0.0, fees, "manual", "live", f"{day}T10:00:00", day.isoformat()))
    db.close()
    state, source = starting_state(tmp_path / "trading.db", E2, config.DEFAULTS)
    assert source == f"账户 {E.isoformat()} 收盘快照的现金"
    assert state.cash == round(951_000.00 - 965.01, 2)  # cash + frozen at E's close, then E1's buy
    assert [(p.stock_code, p.volume, p.open_date) for p in state.positions] == [(CODE, 2100, E)]
