"""DESIGN §7 decided cases in the live engine (issue 20): a stock sold out on a day is not bought again by a
MACD entry that day (one rule with the backtest); the next day it may be."""
from datetime import datetime

from models import Quote, Rule, Signal, SignalStatus
from test_live_engine import PATH, SZ, Engine, opening_buys


def macd_buy(engine, when):
    engine.clock.set(datetime.fromisoformat(when))
    engine.hub.publish(Quote(code=SZ, price=10.40, prev_close=10.45, time=engine.clock.now(), source="test"))
    signal = engine.signals.add(Signal(stock_code=SZ, rule=Rule.MACD_BUY, volume=1900, trigger_price=10.40,
                                       observed_price=10.40, created_at=engine.clock.now(), amount=20000))
    engine.runner.run_once()
    return engine.signals.get(signal.id)


def test_no_macd_reentry_on_the_day_of_an_exit(tmp_path):
    engine = Engine(tmp_path, auto=True)
    opening_buys(engine)
    for code, price, when in PATH[:9]:  # ... 000001.SZ: take-profit, then the dynamic stop sells the rest
        engine.quote(code, price, when)
    assert engine.core.positions.get(SZ) is None or engine.core.positions.get(SZ).volume == 0
    refused = macd_buy(engine, "2025-09-30T11:00")
    assert (refused.status, refused.reason) == (SignalStatus.REJECTED, f"{SZ} 今日已卖出清仓，当天不再 MACD 买入")
    allowed = macd_buy(engine, "2025-10-09T09:35")
    assert allowed.status is SignalStatus.EXECUTED
