"""`backtest.py compare` (issue 20) on a scripted account: every backtest trade is matched to a fill (with its
slippage) or explained by the account's records, and every account trade the backtest did not make is named —
each cause occurs exactly once here."""
import io
import json

import pytest

import backtest
from core.order_journal import OrderJournal
from core.signal_store import SignalStore
from persistence.storage import Database
from test_backtest_scenarios import E, E1, PREFIX, QUIET_E, write_bars

E_, E1_ = E.isoformat(), E1.isoformat()
MATCHED, EXPIRED, REJECTED, TIMED_OUT, SILENT = "600000.SH", "600036.SH", "601318.SH", "601888.SH", "603288.SH"
SHIFTED = "600519.SH"
POOL = [MATCHED, EXPIRED, REJECTED, TIMED_OUT, SILENT, SHIFTED]
STOP_E1 = (9.02, 9.10, 9.00, 9.05)  # EXPIRED's E1: the backtest's stop-loss sells at the open 9.02


def scripted_account(folder):
    """A daemon data dir: the backtest buys each pool stock at 10.00 on E (MACD entry); the account filled
    one 1 cent worse, let one signal expire (so the backtest's stop-loss of that stock on E1 follows a missing
    entry), had one rejected, one order time out, recorded nothing for the fifth and bought the sixth a day
    late; it also made a manual buy, a grid sell and a watch-task buy."""
    folder.mkdir()
    (folder / "stock_pool.json").write_text(json.dumps(POOL), encoding="utf-8")
    db = Database(folder / "sim_trading.db")
    OrderJournal(db, None, "simulation")
    SignalStore(db, None)
    signal_sql = ("INSERT INTO signals(id, stock_code, rule, side, volume, amount, trigger_price, observed_price,"
                  " created_at, updated_at, status, reason, order_id) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)")
    for row in [(1, MATCHED, "macd_buy", "buy", 2000, 20000, 10.0, 10.0, f"{E_}T09:30:03", f"{E_}T09:30:04",
                 "executed", "", "c1"),
                (2, EXPIRED, "macd_buy", "buy", 2000, 20000, 10.0, 10.0, f"{E_}T09:30:03", f"{E_}T09:31:05",
                 "expired", "信号超过 60 秒未执行，已过期", ""),
                (3, REJECTED, "macd_buy", "buy", 2000, 20000, 10.0, 10.0, f"{E_}T09:30:03", f"{E_}T09:30:04",
                 "rejected", "可用资金不足", ""),
                (4, TIMED_OUT, "macd_buy", "buy", 2000, 20000, 10.0, 10.0, f"{E_}T09:30:03", f"{E_}T09:30:04",
                 "executed", "", "c4")]:
        db.execute(signal_sql, row)
    order_sql = ("INSERT INTO orders(client_id, order_id, stock_code, side, volume, price, status, filled_volume,"
                 " filled_amount, rule, origin_rule, signal_id, mode, reason, created_at, updated_at, trading_day)"
                 " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
    fill_sql = ("INSERT INTO trade_records(fill_id, order_id, client_id, stock_code, side, price, volume, amount,"
                " commission, stamp_duty, transfer_fee, fees, strategy, mode, trade_time, trading_day)"
                " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
    orders = [("c1", "o1", MATCHED, "buy", 1000, 10.02, "filled", 2000, 20020.0, "macd_buy", "macd_buy", 1, E_),
              ("c4", "o4", TIMED_OUT, "buy", 2000, 10.02, "cancelled", 0, 0.0, "macd_buy", "macd_buy", 4, E_),
              ("c5", "o5", "000001.SZ", "buy", 1000, 11.0, "filled", 1000, 11000.0, "manual", "manual", None, E_),
              ("c6", "o6", MATCHED, "sell", 500, 10.05, "filled", 500, 5025.0, "grid_sell", "grid_sell", None, E1_),
              ("c7", "o7", "000002.SZ", "buy", 300, 8.0, "filled", 300, 2400.0, "watch_buy", "watch_buy", None, E1_),
              ("c8", "o8", SHIFTED, "buy", 2000, 10.02, "filled", 2000, 20000.0, "macd_buy", "macd_buy", None, E1_)]
    for client, oid, code, side, volume, price, status, filled, amount, rule, origin, signal, day in orders:
        reason = "买单超时未成交，已撤单" if client == "c4" else ""
        db.execute(order_sql, (client, oid, code, side, volume, price, status, filled, amount, rule, origin, signal,
                               "simulation", reason, f"{day}T09:30:05", f"{day}T09:31:05", day))
    fills = [("f1", "o1", "c1", MATCHED, "buy", 10.01, 1200, 12012.0, "macd_buy", E_),  # two partial fills
             ("f2", "o1", "c1", MATCHED, "buy", 10.01, 800, 8008.0, "macd_buy", E_),
             ("f5", "o5", "c5", "000001.SZ", "buy", 11.0, 1000, 11000.0, "manual", E_),
             ("f6", "o6", "c6", MATCHED, "sell", 10.05, 500, 5025.0, "grid_sell", E1_),
             ("f7", "o7", "c7", "000002.SZ", "buy", 8.0, 300, 2400.0, "watch_buy", E1_),
             ("f8", "o8", "c8", SHIFTED, "buy", 10.0, 2000, 20000.0, "macd_buy", E1_)]
    for fill_id, oid, client, code, side, price, volume, amount, rule, day in fills:
        db.execute(fill_sql, (fill_id, oid, client, code, side, price, volume, amount, 5.0, 0.0, 0.1, 5.1, rule,
                              "simulation", f"{day}T09:31:00", day))
    db.close()


@pytest.fixture
def bars(tmp_path):
    folder = tmp_path / "bars"
    for code in POOL:
        write_bars(folder, code, PREFIX + [QUIET_E, STOP_E1 if code == EXPIRED else QUIET_E])
    return folder


def test_every_trade_is_matched_or_explained_once_per_cause(tmp_path, bars):
    account = tmp_path / "account"
    scripted_account(account)
    out, err = io.StringIO(), io.StringIO()
    code = backtest.main(["compare", "--account", str(account), "--data", str(bars), "--out", str(tmp_path / "cmp")],
                         out, err)
    assert code == 0, err.getvalue()
    summary = json.loads((tmp_path / "cmp" / "compare_summary.json").read_text(encoding="utf-8"))
    assert (summary["start"], summary["end"]) == (E_, E1_)
    assert summary["causes"] == {
        "matched": {"count": 1, "amount": 20020.0, "slippage_cny": 20.0},
        "shifted": {"count": 1, "amount": 20000.0, "slippage_cny": 0.0},
        "follows_missing_entry": {"count": 1, "amount": 18040.0, "slippage_cny": 0.0},
        "signal_expired": {"count": 1, "amount": 20000.0, "slippage_cny": 0.0},
        "signal_rejected": {"count": 1, "amount": 20000.0, "slippage_cny": 0.0},
        "order_timed_out": {"count": 1, "amount": 20000.0, "slippage_cny": 0.0},
        "no_signal": {"count": 1, "amount": 20000.0, "slippage_cny": 0.0},
        "manual": {"count": 1, "amount": 11000.0, "slippage_cny": 0.0},
        "grid": {"count": 1, "amount": 5025.0, "slippage_cny": 0.0},
        "watch": {"count": 1, "amount": 2400.0, "slippage_cny": 0.0}}
    import csv

    with open(tmp_path / "cmp" / "compare.csv", encoding="utf-8") as handle:
        rows = {(row["stock_code"], row["cause"]): row for row in csv.DictReader(handle)}
    matched = rows[(MATCHED, "matched")]
    assert (matched["backtest_price"], matched["account_price"], matched["account_volume"],
            matched["slippage_bps"]) == ("10.0", "10.01", "2000", "10.0")
    assert rows[(REJECTED, "signal_rejected")]["reason"] == "可用资金不足"
    assert rows[(EXPIRED, "signal_expired")]["reason"] == "信号超过 60 秒未执行，已过期"
    assert rows[(TIMED_OUT, "order_timed_out")]["reason"] == "委托 c4 状态 cancelled：买单超时未成交，已撤单"
    assert rows[(SHIFTED, "shifted")]["reason"] == f"账户成交日 {E1_}，回测 {E_}"
    assert rows[(EXPIRED, "follows_missing_entry")]["reason"] == f"回测于 {E_} 买入，账户未买入"
    text = out.getvalue()
    assert "一致：1 笔" in text and "滑点成本 20.00 元" in text and "信号被拒绝：1 笔" in text


def test_account_overrides_are_the_backtest_parameters(tmp_path, bars):
    """The account's web override (ENABLE_MACD_BUY off) is what the backtest uses: no entries, so every fill
    of the account is extra."""
    from persistence.config_store import ConfigStore

    account = tmp_path / "account"
    scripted_account(account)
    db = Database(account / "config.db")
    ConfigStore(db).update({"ENABLE_MACD_BUY": False}, source="web")
    db.close()
    from backtesting.compare import run_compare

    comparison = run_compare(account, bars)
    assert {row.kind for row in comparison.rows} == {"extra"}
    assert sorted(row.cause for row in comparison.rows) == ["grid", "manual", "unexplained", "unexplained", "watch"]


def test_account_per_stock_parameters_are_the_backtest_parameters(tmp_path, bars):
    """A per-stock POSITION_UNIT of 10,000 in the account (issue 17's table) halves that stock's entry in the
    backtest: 1,000 shares against the account's 2,000."""
    import core.stock_params as stock_params
    from backtesting.compare import run_compare
    from persistence.storage import migrate

    account = tmp_path / "account"
    scripted_account(account)
    db = Database(account / "sim_trading.db")
    migrate(db, "stock_params", stock_params.MIGRATIONS)
    db.execute("INSERT INTO stock_params(stock_code, key, value, updated_at) VALUES(?,?,?,?)",
               (MATCHED, "POSITION_UNIT", "10000", "2024-04-01T00:00:00"))
    db.close()
    rows = {(row.stock_code, row.cause): row for row in run_compare(account, bars).rows}
    assert (rows[(MATCHED, "matched")].backtest_volume, rows[(MATCHED, "matched")].account_volume) == (1000, 2000)
    assert rows[(SILENT, "no_signal")].backtest_volume == 2000


def test_unmatched_trades_carry_the_chain_back_to_where_the_holding_diverged(tmp_path):
    """Issue 27 §5 (the 600309.SH case): the account's entry filled at 43.16, the backtest's at 43.36, so the
    account's take-profit fired days earlier and the episode diverged. Each later unmatched trade of that holding
    names the upstream fill; a shifted row is not 「一致」; an order-file line and a trade after a rule parameter
    change are named; a zero difference is never 「-0.00」."""
    from datetime import date

    from backtesting.compare import AccountTrade, compare
    from backtesting.engine import Trade
    from persistence.config_store import ConfigStore
    from core.models import Rule, Side

    account = tmp_path / "account"
    account.mkdir()
    db = Database(account / "sim_trading.db")
    OrderJournal(db, None, "simulation")
    SignalStore(db, None)
    db.close()
    code = "600309.SH"
    d = [date(2021, 3, day) for day in (1, 8, 9, 15, 16, 17)]
    backtest_trades = [Trade(d[0], code, Side.BUY, 43.36, 400, 17344.0, 5.2, Rule.MACD_BUY),
                       Trade(d[3], code, Side.SELL, 46.0, 200, 9200.0, 8.0, Rule.TAKE_PROFIT),
                       Trade(d[5], "600000.SH", Side.BUY, 10.0, 2000, 20000.0, 6.2, Rule.MACD_BUY)]
    account_trades = [AccountTrade(d[0], code, "buy", "macd_buy", 400, 17264.0, "c1"),  # 43.16
                      AccountTrade(d[1], code, "sell", "take_profit", 200, 9140.0, "c2"),  # 7 days earlier
                      AccountTrade(d[2], code, "sell", "dynamic_take_profit", 200, 9300.0, "c3"),
                      AccountTrade(d[4], "000001.SZ", "buy", "order_file", 1000, 12000.0, "c4"),
                      AccountTrade(d[5], "600000.SH", "buy", "macd_buy", 2000, 20000.0, "c5"),
                      AccountTrade(d[5], "600036.SH", "sell", "stop_loss", 500, 20000.0, "c6")]
    config_db = Database(account / "config.db")
    ConfigStore(config_db).update({"STOP_LOSS_RATIO": -0.05}, source="web")
    config_db.execute("UPDATE config_history SET time='2021-03-10T09:00:00'")
    config_db.close()
    comparison = compare(backtest_trades, account_trades, account / "sim_trading.db", d[0], d[5])
    rows = {(row.day, row.stock_code, row.rule): row for row in comparison.rows}
    entry = rows[(d[0].isoformat(), code, "macd_buy")]
    assert (entry.kind, entry.cause, entry.slippage_cny) == ("matched", "matched", -80.0)
    early = rows[(d[3].isoformat(), code, "take_profit")]
    assert (early.kind, early.cause) == ("shifted", "shifted")
    trailing = rows[(d[2].isoformat(), code, "dynamic_take_profit")]
    assert trailing.cause == "diverged_upstream"
    assert trailing.reason.startswith("上游：2021-03-01 MACD买入 账户成交价 43.16，回测 43.36")
    assert rows[(d[4].isoformat(), "000001.SZ", "order_file")].cause == "order_file"
    same = rows[(d[5].isoformat(), "600000.SH", "macd_buy")]
    assert (same.slippage_cny, same.slippage_bps) == (0.0, 0.0) and str(same.slippage_cny) == "0.0"
    changed = rows[(d[5].isoformat(), "600036.SH", "stop_loss")]
    assert changed.cause == "parameter_changed" and "STOP_LOSS_RATIO：-0.095 → -0.05" in changed.reason
    assert "unexplained" not in {row.cause for row in comparison.rows}


def test_the_accounts_t0_table_is_the_comparisons_and_an_unreadable_one_is_named(tmp_path, bars):
    """Issue 28: the comparison backtest reads the account's own T0_ETF_FILE, like the daemon; a file that cannot
    be read stops it with a Chinese line naming the file, before any backtest."""
    import market_rules
    from backtesting.compare import main
    from persistence.config_store import ConfigStore

    account = tmp_path / "account"
    scripted_account(account)
    db = Database(account / "config.db")
    ConfigStore(db).update({"T0_ETF_FILE": str(tmp_path / "gone.csv")}, source="web")
    db.close()
    before = market_rules.instrument_data()
    out, err = io.StringIO(), io.StringIO()
    try:
        assert main(["--account", str(account), "--data", str(bars)], out, err) == 2
    finally:
        market_rules.use_instrument_data(before)
    assert "对比失败：品种数据文件" in err.getvalue() and "gone.csv" in err.getvalue()
