"""DESIGN §7 decided cases in the live engine (issue 20): a stock sold out on a day is not bought again by a
MACD entry that day (one rule with the backtest); the next day it may be."""
from datetime import datetime

from core.models import Quote, Rule, Signal, SignalStatus
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


def test_portfolio_cap_values_holdings_at_the_previous_close(tmp_path):
    """Held: 2000 × 600036 bought at 12.34 (cash 75,312.35). Next day it trades at 13.57. Buying 000001 for
    20,000 CNY (1900 × 10.02 = 19,038): at the previous close (24,680 held, total 99,992.35) that is 43.7 % of
    total assets, inside a 44.5 % cap; at today's price it would be 45.1 % and refused."""
    import pytest

    from core.models import OrderRejected, OrderStatus
    from test_trading_executor import CODE, Env

    env = Env(tmp_path, SIMULATION_BALANCE=100_000.0, MAX_TOTAL_POSITION_RATIO=0.445)
    env.quotes.set(CODE, 12.34, 12.34)
    env.ex.buy_stock(CODE, volume=2000)
    env.next_day(13.57, 12.34)
    env.quotes.set("000001.SZ", 10.00, 10.00)
    order = env.ex.buy_stock("000001.SZ", amount=20_000)
    assert (order.volume, order.status) == (1900, OrderStatus.FILLED)
    env.quotes.set("000002.SZ", 10.00, 10.00)  # now 24,680 + 19,000 held at previous closes: the next one is over
    with pytest.raises(OrderRejected) as info:
        env.ex.buy_stock("000002.SZ", amount=20_000)
    assert info.value.code == "POSITION_RATIO" and "持仓按昨收计市值" in info.value.message
