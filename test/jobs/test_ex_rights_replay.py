"""Issue 28 §2, proof on real data through the daemon's own replay: 长春高新 000661.SZ held near its trailing
stop into its 2020-06-09 ex-date (10派10转10, raw close 666.46 → open 333.00). Replaying the RAW bars with the
ex-rights keeper, no exit fires on the gap and the trades are those of the same run on forward-adjusted bars;
without the keeper the gap sells the stock on the ex-date. The real components (replay source, monitor,
runner, executor, sim account) on SQLite files; skipped when ../shared/data is absent."""
from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from data_test_support import shared_data
from jobs.ex_rights import ExRightsKeeper, FileEventSource
from backtesting.data import derive_events_from_folders
from market import ex_rights
from web_test_support import build_system

CODE = "000661.SZ"
START, SET_HIGH, END = "2020-05-28", date(2020, 6, 5), date(2020, 8, 31)
HIGHEST = 688.0  # raw: cost ≈ 654.2, so h ≈ 5.2 % and the trailing stop is 688 × 0.96 = 660.48, under every low


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path, Path]:
    import pandas as pd

    base = tmp_path_factory.mktemp("ex_rights_replay")
    adjusted = pd.read_csv(shared_data("full", "daily", f"{CODE}.csv"), dtype={"date": str})
    adjusted = adjusted[(adjusted["date"] >= "2020-01-02") & (adjusted["date"] <= "2022-12-20")]
    raw = pd.read_csv(shared_data("full", "daily_raw_ohlc", f"{CODE}.csv"), dtype={"date": str})
    raw = raw.merge(adjusted[["date", "volume"]], on="date")
    for name, frame in (("raw", raw), ("qfq", adjusted)):
        (base / name).mkdir()
        frame.to_csv(base / name / f"{CODE}.csv", index=False)
    events = base / "events.csv"
    derived = derive_events_from_folders(base / "raw", base / "qfq")
    events.write_text(ex_rights.format_events(derived[CODE]), encoding="utf-8")
    return base / "raw", base / "qfq", events


def replay(tmp_path: Path, folder: Path, events: Path | None, scale: float) -> tuple[list[tuple], list[tuple]]:
    """(trades as (day, side, rule), signals as (day, rule)) of the run."""
    overrides = {"EX_RIGHTS_EVENTS_FILE": str(events)} if events is not None else {}
    system = build_system(tmp_path, {"REPLAY_DATA_DIR": str(folder), "REPLAY_START_DATE": START,
                                     "ENABLE_AUTO_TRADING": True, "ENABLE_MACD_BUY": False, **overrides}, pool=[CODE])
    try:
        if events is not None:
            keeper_for(system, events)
        system.executor.buy_stock(CODE, volume=100)
        marked = False
        while system.clock.today() <= END:
            if not marked and system.clock.today() >= SET_HIGH:
                system.positions.set_rule_state(CODE, highest_price=round(HIGHEST * scale, 2), profit_triggered=True)
                marked = True
            system.step()
            system.runner.run_once()
        trades = [(row["trade_time"].date().isoformat(), row["side"], row["strategy"])
                  for row in system.executor.trade_records()]
        signals = sorted((s.created_at.date().isoformat(), s.rule.value)
                         for s in system.signals.pending() + system.signals.history(1000))
        return trades, signals
    finally:
        system.close()


def test_no_false_exit_on_the_ex_date_and_the_same_trades_as_adjusted_bars(folders, tmp_path):
    import pandas as pd

    raw_dir, adjusted_dir, events = folders
    raw_close = pd.read_csv(raw_dir / f"{CODE}.csv").set_index("date")["close"]
    scale = pd.read_csv(adjusted_dir / f"{CODE}.csv").set_index("date")["close"]["2020-06-04"] / raw_close["2020-06-04"]

    with_events = replay(tmp_path / "raw", raw_dir, events, 1.0)
    adjusted = replay(tmp_path / "qfq", adjusted_dir, None, scale)
    unaware = replay(tmp_path / "unaware", raw_dir, None, 1.0)

    assert with_events == adjusted
    assert with_events == ([("2020-05-28", "buy", "manual"), ("2020-08-24", "sell", "dynamic_take_profit")],
                           [("2020-08-24", "dynamic_take_profit")])  # nothing fires on the gap
    # Without the events the gap is a stop-loss on the ex-date (refused there only by the limit-down computed
    # from the unadjusted previous close).
    # (When the refused sell is retried depends on the real-time exit back-off, so only the signal is compared.)
    assert unaware[1] == [("2020-06-09", "stop_loss")]


# ---- the ex-date's first quote, its limits and the indicators (issue 28 §2 gaps) ----------------------------

EX_DATE = date(2020, 6, 9)
REFERENCE = 332.73  # (666.46 − 0.9952) ÷ 2 = 332.7324 → half-up to the tick (SZSE §4.4.1, §3.3.19)


def keeper_for(system, events: Path) -> ExRightsKeeper:
    hub = system.data.hub
    keeper = ExRightsKeeper(system.dbs[1], system.clock, system.events, FileEventSource(events), system.positions,
                            last_quote=hub.last_seen, sim=system.broker, watch_store=system.watch_store,
                            settings=system.settings)
    system.positions.set_ex_rights_source(keeper.source_for_positions)
    hub.subscribe(keeper.on_quote, first=True)  # as daemon/composition.py wires it
    return keeper


def test_every_rule_meets_the_first_ex_date_quote_with_adjusted_levels_and_the_reference_limits(folders, tmp_path):
    from core import order_checks
    from watch.rules import Condition, ConditionType, WatchAction, WatchTask

    raw_dir, _, events = folders
    system = build_system(tmp_path, {"REPLAY_DATA_DIR": str(raw_dir), "REPLAY_START_DATE": "2020-06-08",
                                     "EX_RIGHTS_EVENTS_FILE": str(events), "ENABLE_AUTO_TRADING": False,
                                     "ENABLE_MACD_BUY": False}, pool=[CODE])
    seen_at_first_quote: list[tuple] = []

    def rule_on_the_quote(quote):  # subscribed before the keeper, like the sim account and the monitors' wake-up
        if quote.code == CODE and quote.time.date() == EX_DATE and not seen_at_first_quote:
            alerts = system.watch.run_once()
            [task] = system.watch_store.all(CODE)
            held = {p.stock_code: p.volume for p in system.broker.query_positions()}
            seen_at_first_quote.append((task.conditions[0].value, len(alerts), held.get(CODE)))

    system.data.hub.subscribe(rule_on_the_quote)
    try:
        keeper_for(system, events)
        system.executor.buy_stock(CODE, volume=100)
        system.watch_store.add(WatchTask(CODE, (Condition(ConditionType.PRICE_BELOW, 600.0),), action=WatchAction()))
        while system.clock.today() < EX_DATE:
            system.step()
        assert seen_at_first_quote == [(299.552006, 0, 200)]  # 600 × 0.499253344, no alert on the gap, bonus shares in
        quote = system.data.hub.latest(CODE)
        assert (quote.price, quote.prev_close, quote.limit_down, quote.limit_up) == (333.0, REFERENCE, 299.46, 366.0)
        assert order_checks.limits(quote) == (299.46, 366.0)
        order = system.executor.sell_stock(CODE, 200)  # a genuine exit on the ex-date is not refused as 跌停
        system.step()
        assert [(r["trade_time"].date(), r["side"], r["volume"]) for r in system.executor.trade_records()] == [
            (date(2020, 6, 8), "buy", 100), (EX_DATE, "sell", 200)]
        assert (order.price, order.filled_amount) == (332.33, 66600.0)  # 333.00 × (1 − 0.2 %), over 299.46
        assert system.watch_store.all(CODE)[0].fired_count == 0
    finally:
        system.close()


def test_without_events_the_ex_date_limits_come_from_the_raw_close(folders, tmp_path):
    raw_dir, _, _ = folders
    system = build_system(tmp_path, {"REPLAY_DATA_DIR": str(raw_dir), "REPLAY_START_DATE": "2020-06-09"}, pool=[CODE])
    try:
        quote = system.data.hub.latest(CODE)
        assert (quote.prev_close, quote.limit_down, quote.limit_up) == (666.46, 599.81, 733.11)
    finally:
        system.close()


def test_the_daemon_indicators_read_forward_adjusted_closes_on_raw_bars(folders, tmp_path):
    """MACD of raw bars + events equals MACD of the (rescaled) forward-adjusted series within 0.01 around the
    ex-date, and finds the same cross; raw bars alone read the gap as a slump."""
    import pandas as pd

    raw_dir, adjusted_dir, events = folders
    runs = {}
    for name, folder, extra in (("events", raw_dir, {"EX_RIGHTS_EVENTS_FILE": str(events)}),
                                ("raw", raw_dir, {}), ("qfq", adjusted_dir, {})):
        system = build_system(tmp_path / name, {"REPLAY_DATA_DIR": str(folder), "REPLAY_START_DATE": "2020-06-15",
                                                "ENABLE_MACD_BUY": False, **extra}, pool=[CODE])
        try:
            runs[name] = (system.data.indicators.rows(CODE, date(2020, 6, 1), date(2020, 6, 12)),
                          system.data.indicators.macd_cross(CODE, date(2020, 6, 12)))
        finally:
            system.close()
    raw = pd.read_csv(raw_dir / f"{CODE}.csv").set_index("date")["close"]
    qfq = pd.read_csv(adjusted_dir / f"{CODE}.csv").set_index("date")["close"]
    scale = raw["2020-06-12"] / qfq["2020-06-12"]  # the qfq series' reference is 2022-12-20; the replay's is today
    with_events, adjusted = runs["events"][0], runs["qfq"][0]
    assert list(with_events["date"]) == list(adjusted["date"]) and len(with_events) == 10
    for column in ("macd_dif", "macd_dea", "macd_hist"):
        assert (with_events[column] - adjusted[column] * scale).abs().max() < 0.01, column
    # The real golden cross of 2020-06-11 (histogram −0.08 → +0.69): raw bars alone bury it under the gap's
    # false slump (histogram −24.06 on the ex-date, −40.22 on 06-11).
    assert (runs["events"][1], runs["qfq"][1], runs["raw"][1]) == ("golden", "golden", None)
    assert round(runs["raw"][0]["macd_hist"].iloc[6], 2) == -24.06
