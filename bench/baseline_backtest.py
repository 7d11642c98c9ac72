"""A plain per-bar Python backtest, kept only as the yardstick of bench/RESULTS.md (issue 20: the real CLI must
take at most 0.35× of this one's time on 240 stocks × 1,395 days). It is written the straightforward way: the
csv module, Python lists and dicts, MACD by the EMA recurrence, every stock's every bar visited each day, and
the rules of strategy.py evaluated at the four path points of a bar (O, then H/L in path order, then C) instead
of at exact trigger crossings. Same outputs as backtest.py (trades.csv, equity.csv, summary.json).
Usage: python bench/baseline_backtest.py --data DIR --out DIR"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import config  # noqa: E402
import market_rules  # noqa: E402
import strategy  # noqa: E402
from core.models import Rule, Side  # noqa: E402


def ema(values: list[float], period: int) -> list[float]:
    alpha, out, current = 2 / (period + 1), [], None
    for value in values:
        current = value if current is None else alpha * value + (1 - alpha) * current
        out.append(current)
    return out


def macd_hist(closes: list[float]) -> list[float]:
    fast, slow = ema(closes, 12), ema(closes, 26)
    dif = [f - s for f, s in zip(fast, slow)]
    dea = ema(dif, 9)
    return [2 * (d - e) for d, e in zip(dif, dea)]


def sma(values: list[float], period: int) -> list[float]:
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= period:
            total -= values[i - period]
        out.append(total / period if i >= period - 1 else math.nan)
    return out


def load(folder: Path) -> dict[str, dict[str, tuple[float, float, float, float, float]]]:
    stocks = {}
    for path in sorted(folder.glob("*.csv")):
        bars = {}
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                values = tuple(float(row[k]) for k in ("open", "high", "low", "close", "volume"))
                if values[4] > 0:
                    bars[row["date"]] = values
        stocks[market_rules.normalize_code(path.stem)] = bars
    return stocks


def run(folder: Path, out: Path) -> None:
    settings = dict(config.DEFAULTS)
    params = strategy.RuleParams.from_settings(settings)
    stocks = load(folder)
    days = sorted({day for bars in stocks.values() for day in bars})
    signals: dict[str, set[str]] = {}
    for code, bars in stocks.items():
        dates = sorted(bars)
        closes = [bars[d][3] for d in dates]
        hist, mas = macd_hist(closes), [sma(closes, p) for p in (10, 20, 30, 60)]
        for i in range(34, len(dates) - 1):
            rule = strategy.macd_signal(hist[i - 1], hist[i], params, *(ma[i] for ma in mas))
            if rule is Rule.MACD_BUY:
                signals.setdefault(dates[i + 1], set()).add(code)
    cash, holdings, last_close, trades, equity = float(settings["SIMULATION_BALANCE"]), {}, {}, [], []
    for day in days:
        for code in sorted(stocks):  # every stock, every bar
            bar = stocks[code].get(day)
            if bar is None:
                continue
            o, h, l, c, _ = bar
            if code in signals.get(day, ()) and code not in holdings:
                volume = market_rules.buy_volume_for_amount(code, settings["POSITION_UNIT"], o)
                fees = market_rules.fees(code, Side.BUY, o, volume, settings)["total"] if volume else 0
                value = sum(p.volume * last_close[k] for k, p in holdings.items())
                if volume and o * volume + fees <= cash and value + o * volume <= 0.95 * (cash + value):
                    cash -= o * volume + fees
                    holdings[code] = strategy.apply_buy(None, code, o, volume, fees, day)
                    trades.append((day, code, "buy", o, volume, fees, Rule.MACD_BUY.value))
            position = holdings.get(code)
            for price in ((o, l, h, c) if c >= o else (o, h, l, c)) if position else ():
                position = holdings.get(code)
                if position is None:
                    break
                position = position.copy(highest_price=max(position.highest_price, price))
                holdings[code] = position
                for action in strategy.evaluate(position, price, params):
                    fees = market_rules.fees(code, action.rule.side, price, action.volume, settings)["total"]
                    if action.rule.side is Side.SELL:
                        cash += price * action.volume - fees
                        position = strategy.apply_sell(position, action.volume, action.rule)
                    elif price * action.volume + fees <= cash:
                        cash -= price * action.volume + fees
                        position = strategy.apply_buy(position, code, price, action.volume, fees, day,
                                                      action.level_index)
                    else:
                        continue
                    trades.append((day, code, action.rule.side.value, price, action.volume, fees, action.rule.value))
                if position.volume == 0:
                    del holdings[code]
                else:
                    holdings[code] = position
            last_close[code] = c
        for code, position in list(holdings.items()):
            holdings[code] = position.copy(available=position.volume)
        equity.append((day, cash, sum(p.volume * last_close[k] for k, p in holdings.items())))
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "trades.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([("date", "stock_code", "side", "price", "volume", "fees", "rule")] + trades)
    with open(out / "equity.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([("date", "cash", "market_value")] + equity)
    final = equity[-1][1] + equity[-1][2]
    (out / "summary.json").write_text(json.dumps({"final_equity": round(final, 2), "trades": len(trades)}),
                                      encoding="utf-8")
    print(f"{len(stocks)} 只 × {len(days)} 天，{len(trades)} 笔，期末权益 {final:,.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description="逐根K线的朴素 Python 回测（仅作基准对照）")
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    run(Path(args.data), Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
