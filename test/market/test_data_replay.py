"""Replay: real daily bars become the DESIGN §7 intraday path on the replay clock; the synthetic 「演示行情」
is deterministic and realistic; finished days go into the bar store only after the close."""
from datetime import date, datetime, time

import numpy as np
import pytest

import market_rules
from market.bar_store import DailyBar
from data_manager import build_data_manager
from data_test_support import isolated_home, make_settings, no_network, shared_data  # noqa: F401 (fixtures)
from market.clock import ReplayClock
from market.replay_source import path_points, sample_path, slot_time
from market.synthetic_market import SyntheticMarket

pytestmark = pytest.mark.usefixtures("no_network")

CODE = "600000.SH"
# 600000.SH (qfq) from ../shared/data/daily: 2020-04-02 close 7.82; 2020-04-03 O 7.76 H 7.82 L 7.75 C 7.78
# (close >= open: O→L→H→C); 2020-04-07 O 7.89 H 7.91 L 7.84 C 7.88 (close < open: O→H→L→C).
DAY1, DAY2 = date(2020, 4, 3), date(2020, 4, 7)


def cents(a, b):
    """Every price from a to b inclusive in steps of 0.01, as the exchange would print them."""
    step = 1 if b >= a else -1
    return [round(c / 100, 2) for c in range(round(a * 100), round(b * 100) + step, step)]


def dedupe(prices):
    return [p for i, p in enumerate(prices) if i == 0 or p != prices[i - 1]]


def run_until(manager, clock, stop: datetime, limit=10_000):
    for _ in range(limit):
        if clock.now() >= stop:
            return
        manager.run_once()
    raise AssertionError(f"replay did not reach {stop}")


@pytest.fixture
def real_replay(tmp_path):
    folder = shared_data("daily")
    settings = make_settings(tmp_path, REPLAY_DATA_DIR=str(folder), REPLAY_TICKS_PER_DAY=60)
    manager, clock = build_data_manager(settings, tmp_path / "data")
    manager.set_watchlist([CODE])
    return manager, clock


def test_real_bars_replay_as_the_intraday_path_on_the_clock(real_replay):
    manager, clock = real_replay
    assert manager.source_name == "replay" and "回放" in manager.source_label
    assert isinstance(clock, ReplayClock) and clock.now() == datetime(2020, 4, 3, 9, 25)  # 61st available day
    deliveries, day_changes = [], []
    manager.hub.subscribe(lambda q: deliveries.append((q, clock.now(), clock.session())))
    clock.on_new_day(lambda old, new: day_changes.append((old, new)))

    run_until(manager, clock, datetime(2020, 4, 3, 14, 56))  # the last intraday tick
    history = manager.get_history(CODE)
    assert len(history) == 60 and history["date"].iloc[-1] == date(2020, 4, 2) and history["close"].iloc[-1] == 7.82
    run_until(manager, clock, datetime(2020, 4, 3, 15, 0))  # the close step stores the finished day
    assert manager.get_history(CODE, start=DAY1).values.tolist() == [[DAY1, 7.76, 7.82, 7.75, 7.78, 14842382.0]]
    run_until(manager, clock, datetime(2020, 4, 7, 15, 0))

    day1 = [(q, now, session) for q, now, session in deliveries if q.time.date() == DAY1]
    intraday = [q for q, _, _ in day1 if q.time.time() < time(15, 0)]
    assert len(intraday) == 60
    assert dedupe([q.price for q in intraday]) == cents(7.76, 7.75) + cents(7.76, 7.82) + cents(7.81, 7.78)
    assert all(q.prev_close == 7.82 and (q.limit_down, q.limit_up) == (7.04, 8.60) for q, _, _ in day1)
    assert [q.high for q in intraday][-1] == 7.82 and min(q.low for q in intraday) == 7.75
    # the clock follows the quotes: each quote is delivered at its own market time, inside a session
    assert all(now == q.time for q, now, _ in day1)
    assert intraday[0].time == datetime(2020, 4, 3, 9, 30) and intraday[-1].time == datetime(2020, 4, 3, 14, 56)
    assert all(session in ("continuous", "closing_auction") for _, _, session in day1[:-1])
    times = [q.time.time() for q in intraday]
    assert times == sorted(set(times)) and not any(time(11, 30) <= t < time(13, 0) for t in times)
    assert day1[-1][0].time == datetime(2020, 4, 3, 15, 0) and day1[-1][0].price == 7.78

    day2 = [q for q, _, _ in deliveries if q.time.date() == DAY2 and q.time.time() < time(15, 0)]
    assert dedupe([q.price for q in day2]) == cents(7.89, 7.91) + cents(7.90, 7.84) + cents(7.85, 7.88)
    assert day2[0].prev_close == 7.78 and day_changes == [(DAY1, DAY2)]


def test_few_ticks_still_visit_open_low_high_close_in_order():
    bar = DailyBar(CODE, DAY1, 7.76, 7.82, 7.75, 7.78, 14842382)
    assert path_points(bar) == [7.76, 7.75, 7.82, 7.78]
    assert sample_path(CODE, path_points(bar), 4) == [7.76, 7.75, 7.82, 7.78]
    assert sample_path(CODE, path_points(bar), 6) == [7.76, 7.75, 7.79, 7.82, 7.8, 7.78]
    falling = DailyBar(CODE, DAY2, 7.89, 7.91, 7.84, 7.88, 23825611)
    assert sample_path(CODE, path_points(falling), 4) == [7.89, 7.91, 7.84, 7.88]


def test_wide_bar_is_sampled_monotonically_between_its_points():
    bar = DailyBar("600519.SH", DAY1, 1700.0, 1760.5, 1650.25, 1755.0, 1e6)  # 16,250 one-cent steps
    prices = sample_path("600519.SH", path_points(bar), 240)
    low_at, high_at = prices.index(1650.25), prices.index(1760.5)
    assert prices[0] == 1700.0 and prices[-1] == 1755.0 and 0 < low_at < high_at < 239
    assert prices[:low_at + 1] == sorted(prices[:low_at + 1], reverse=True)
    assert prices[low_at:high_at + 1] == sorted(prices[low_at:high_at + 1])
    assert prices[high_at:] == sorted(prices[high_at:], reverse=True)


def test_ticks_spread_over_both_sessions():
    assert [slot_time(DAY1, i, 8).time() for i in range(8)] == [
        time(9, 30), time(10, 0), time(10, 30), time(11, 0), time(13, 0), time(13, 30), time(14, 0), time(14, 30)]


def test_tdx_vipdoc_tree_replays_with_mootdx_reader(tmp_path, isolated_home):
    folder = shared_data("tdx")
    settings = make_settings(tmp_path, REPLAY_DATA_DIR=str(folder), REPLAY_START_DATE="2025-08-05",
                             REPLAY_TICKS_PER_DAY=4)
    manager, clock = build_data_manager(settings, tmp_path / "data")
    manager.set_watchlist([CODE])
    quotes = []
    manager.hub.subscribe(quotes.append)
    run_until(manager, clock, datetime(2025, 8, 5, 15, 0))
    # sh600000.day, unadjusted: 2025-08-04 close 13.13; 2025-08-05 O 13.15 H 13.78 L 13.14 C 13.75
    assert [q.price for q in quotes] == [13.15, 13.14, 13.78, 13.75, 13.75]
    assert quotes[0].prev_close == 13.13 and quotes[0].limit_up == 14.44 and quotes[0].limit_down == 11.82
    assert manager.get_history(CODE).iloc[-1].tolist() == [date(2025, 8, 5), 13.15, 13.78, 13.14, 13.75, 133646594.0]


# ---- issue 13: Shanghai ETF .day files ---------------------------------------------------------------------------
def write_day_file(folder, name: str, rows) -> None:
    """A TDX .day file: 32-byte records (date, prices in price units, amount, volume in shares, reserved)."""
    import struct

    lday = folder / "vipdoc" / name[:2] / "lday"
    lday.mkdir(parents=True, exist_ok=True)
    (lday / f"{name}.day").write_bytes(b"".join(struct.pack("<IIIIIfII", *row, 0) for row in rows))


def test_tdx_shanghai_etf_volumes_are_shares_and_56_etfs_do_not_stop_the_feed(tmp_path, isolated_home):
    from market.replay_feeds import TdxBarFolder

    day = (20250805, 4012, 4050, 4001, 4033, 1.2e9)  # 4.012 … 4.033 yuan (0.001 units), amount
    write_day_file(tmp_path, "sh510300", [day + (298765400,)])  # volume: shares
    write_day_file(tmp_path, "sh560010", [day + (1234500,)])  # tdxpy: "SH_OTHER" → NotImplementedError
    write_day_file(tmp_path, "sz159915", [day + (5555500,)])
    feed = TdxBarFolder(tmp_path)
    bars = {code: feed.bars(code) for code in ("510300.SH", "560010.SH", "159915.SZ")}
    assert {code: [(b.day, b.open, b.high, b.low, b.close, b.volume) for b in found] for code, found in bars.items()} == {
        "510300.SH": [(date(2025, 8, 5), 4.012, 4.05, 4.001, 4.033, 298765400.0)],  # not 100× too many
        "560010.SH": [(date(2025, 8, 5), 4.012, 4.05, 4.001, 4.033, 1234500.0)],
        "159915.SZ": [(date(2025, 8, 5), 4.012, 4.05, 4.001, 4.033, 5555500.0)],
    }


def test_code_missing_from_the_replay_folder_is_reported(real_replay):
    manager, _ = real_replay
    manager.set_watchlist([CODE, "300750.SZ"])
    manager.run_once()
    errors = manager.status()["recent_errors"]
    assert any("回放数据中没有 300750.SZ 的日线" in e for e in errors)
    assert manager.get_latest_data("300750.SZ") is None


def test_replay_reports_its_end(tmp_path):
    settings = make_settings(tmp_path, REPLAY_DATA_DIR=str(shared_data("daily")), REPLAY_START_DATE="2025-09-30",
                             REPLAY_TICKS_PER_DAY=4)
    manager, clock = build_data_manager(settings, tmp_path / "data")
    manager.set_watchlist([CODE])
    for _ in range(7):
        manager.run_once()
    assert "回放结束" in manager.status()["last_error"] and "2025-09-30" in manager.status()["last_error"]


# ---- the synthetic market --------------------------------------------------------------------------------

def play_one_day(tmp_path, **overrides):
    settings = make_settings(tmp_path, REPLAY_TICKS_PER_DAY=20, **overrides)
    manager, clock = build_data_manager(settings, tmp_path / "data")
    manager.set_watchlist(["600000.SH", "300750", "688981.SH"])
    quotes = []
    manager.hub.subscribe(quotes.append)
    for _ in range(21):
        manager.run_once()
    return manager, clock, quotes


def test_default_settings_give_the_labelled_synthetic_market(tmp_path):
    manager, clock, quotes = play_one_day(tmp_path / "a")
    assert manager.source_name == "synthetic"
    assert "演示行情" in manager.source_label and "演示行情" in manager.status()["label"]
    assert isinstance(clock, ReplayClock) and clock.now() == datetime(2024, 4, 3, 15, 0)
    assert len(quotes) == 3 * 21 and {q.source for q in quotes} == {"synthetic"}
    assert all(q.name.startswith("演示") for q in quotes)
    for q in quotes:
        assert (q.limit_down, q.limit_up) == market_rules.price_limits(q.code, q.prev_close)
        assert q.limit_down <= q.price <= q.limit_up and q.price == market_rules.round_price(q.code, q.price)
    # history before the first replayed day is in the store, enough for MACD on day one
    history = manager.get_history("300750.SZ", with_indicators=True)
    assert len(history) == 61 and not np.isnan(history["macd_hist"].iloc[-1])


def test_synthetic_market_is_deterministic_per_seed(tmp_path):
    _, _, first = play_one_day(tmp_path / "a")
    _, _, again = play_one_day(tmp_path / "b")
    _, _, other = play_one_day(tmp_path / "c", SYNTHETIC_SEED=7)
    assert [(q.code, q.time, q.price) for q in first] == [(q.code, q.time, q.price) for q in again]
    assert [q.price for q in first] != [q.price for q in other]


def test_synthetic_bars_have_realistic_volatility_and_respect_limits_and_ticks():
    market = SyntheticMarket(seed=20240101)
    for code in ("600000.SH", "000001.SZ", "300750.SZ", "688981.SH", "510300.SH"):
        bars = market.bars(code)
        closes = np.array([b.close for b in bars])
        volatility = np.std(np.diff(np.log(closes)))
        assert 0.012 < volatility < 0.028, (code, volatility)
        for previous, bar in zip(bars, bars[1:]):
            down, up = market_rules.price_limits(code, previous.close)
            assert down <= bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high <= up
            assert all(p == market_rules.round_price(code, p) for p in (bar.open, bar.high, bar.low, bar.close))
    assert market.bars("600000") == market.bars("600000.SH")  # any spelling of a valid code


def test_replay_resumes_after_the_last_started_day(tmp_path):
    """A restarted daemon continues from the next day: market time never runs backwards."""
    from datetime import date as _date

    from market.replay_source import ReplayProgress, resume_index
    from persistence.storage import Database

    db = Database(tmp_path / "market.db")
    progress = ReplayProgress(db, "feed-a")
    days = [_date(2025, 9, 24), _date(2025, 9, 25), _date(2025, 9, 26), _date(2025, 9, 29)]
    assert resume_index(days, 1, progress.last_started()) == 1
    progress.record(_date(2025, 9, 25))
    reopened = ReplayProgress(Database(tmp_path / "market.db"), "feed-a")
    assert reopened.last_started() == _date(2025, 9, 25)
    assert resume_index(days, 1, reopened.last_started()) == 2
    assert resume_index(days, 3, reopened.last_started()) == 3  # a later configured start wins
    assert ReplayProgress(db, "feed-b").last_started() is None


def test_replay_folder_names_file_gives_stock_names(tmp_path):
    """Issue 14: names come from a `names.csv` beside the bars; without one the name is '' (the page shows
    the code)."""
    from market.replay_feeds import CsvBarFolder

    (tmp_path / "600036.SH.csv").write_text("date,open,high,low,close,volume\n2024-01-02,10,10.5,9.9,10.2,1000\n",
                                            encoding="utf-8")
    assert CsvBarFolder(tmp_path).stock_name("600036.SH") == ""
    (tmp_path / "names.csv").write_text("code,name\n600036,招商银行\nbad,坏行\n000001.SZ,平安银行\n",
                                        encoding="utf-8")
    folder = CsvBarFolder(tmp_path)
    assert (folder.stock_name("600036.SH"), folder.stock_name("000001.SZ"), folder.stock_name("600519.SH")) == (
        "招商银行", "平安银行", "")


def test_replay_applies_the_st_band_of_each_replayed_day(tmp_path):
    """Issue 33: an ST stock replayed across 2026-07-06: ±5 % on 07-03, ±10 % from 07-06 (names.csv marks ST)."""
    folder = tmp_path / "bars"
    folder.mkdir()
    rows = ["2026-07-01,10,10,10,10,1000", "2026-07-02,10,10,10,10,1000", "2026-07-03,9.6,10,9.5,9.8,1000",
            "2026-07-06,9.4,9.8,9.3,9.5,1000"]
    (folder / "600146.SH.csv").write_text("date,open,high,low,close,volume\n" + "\n".join(rows) + "\n",
                                          encoding="utf-8")
    (folder / "names.csv").write_text("code,name\n600146,*ST商赢\n", encoding="utf-8")
    settings = make_settings(tmp_path, REPLAY_DATA_DIR=str(folder), REPLAY_TICKS_PER_DAY=8,
                             REPLAY_START_DATE="2026-07-03")
    manager, clock = build_data_manager(settings, tmp_path / "data")
    manager.set_watchlist(["600146.SH"])
    seen = {}
    manager.hub.subscribe(lambda q: seen.setdefault(q.time.date(), (q.limit_down, q.limit_up)))
    run_until(manager, clock, datetime(2026, 7, 6, 14, 0))
    assert seen[date(2026, 7, 3)] == (9.5, 10.5)  # prev close 10.00, ±5 %
    assert seen[date(2026, 7, 6)] == (8.82, 10.78)  # prev close 9.80, ±10 %
