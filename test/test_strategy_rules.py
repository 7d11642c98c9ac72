"""The pure trading rules of DESIGN §6: actions and trigger prices, exact prices and volumes, precedence."""
import math
from datetime import date

import pytest

import config
import strategy
from persistence.config_store import ConfigStore
from core.models import Position, Rule
from persistence.storage import Database
from strategy import Action, RuleParams, TriggerPrices

CODE = "600036.SH"
DEFAULTS = RuleParams.from_settings(config.DEFAULTS)


def params(**overrides) -> RuleParams:
    return RuleParams.from_settings({**config.DEFAULTS, **overrides})


# The first buy: 2000 shares at 10.00 = 20000.00, fees 6.00 commission + 0.20 transfer = 6.20,
# cost 20006.20 / 2000 = 10.0031. stop = 10.0031 × 0.905 = 9.0528055; take-profit = 10.0031 × 1.06 = 10.603286.
OPENED = Position(CODE, volume=2000, available=2000, cost_price=20006.20 / 2000, base_cost_price=10.00,
                  highest_price=10.00, open_date=date(2024, 3, 1))
# After adding 2100 at 9.30 (19530.00 + fees 5.86 + 0.20 = 19536.06): 4100 shares, cost 39542.26 / 4100.
ONE_ADD = OPENED.copy(volume=4100, available=2000, cost_price=39542.26 / 4100, used_add_levels=(1,))
# After adding 1100 at 8.80 (9680.00 + fees 5.00 + 0.10 = 9685.10): 5200 shares, cost 49227.36 / 5200 = 9.4668.
TWO_ADDS = OPENED.copy(volume=5200, available=5200, cost_price=49227.36 / 5200, used_add_levels=(1, 2))
# A round cost for the dynamic take-profit table.
TRIGGERED = Position(CODE, volume=1000, available=1000, cost_price=10.00, base_cost_price=10.00,
                     highest_price=12.00, profit_triggered=True)


def sell(rule, volume, trigger):
    return [Action(rule, volume, trigger)]


def add(volume, trigger, amount, index):
    return [Action(Rule.ADD_POSITION, volume, trigger, amount, index)]


@pytest.mark.parametrize("case, position, price, rule_params, expected", [
    ("nothing between the triggers", OPENED, 10.00, DEFAULTS, []),
    ("just above the stop, above the add level", OPENED, 9.31, DEFAULTS, []),
    ("add level 0.93 at 9.30 buys 20000 worth: 2100 shares", OPENED, 9.30, DEFAULTS, add(2100, 9.30, 20000.0, 1)),
    ("below the add level, above the stop", OPENED, 9.06, DEFAULTS, add(2200, 9.30, 20000.0, 1)),
    ("stop-loss at 9.05 wins over the add level", OPENED, 9.05, DEFAULTS, sell(Rule.STOP_LOSS, 2000, 9.0528055)),
    ("gap far below the stop", OPENED, 8.00, DEFAULTS, sell(Rule.STOP_LOSS, 2000, 9.0528055)),
    ("below the take-profit", OPENED, 10.60, DEFAULTS, []),
    ("first take-profit sells 60 %", OPENED, 10.61, DEFAULTS, sell(Rule.TAKE_PROFIT, 1200, 10.603286)),
    ("T+1: stop holds but nothing available, and no add", OPENED.copy(available=0), 9.00, DEFAULTS, []),
    ("T+1: the add still fires where the stop does not hold", OPENED.copy(available=0), 9.30, DEFAULTS,
     add(2100, 9.30, 20000.0, 1)),
    ("T+1: take-profit blocked", OPENED.copy(available=0), 10.70, DEFAULTS, []),
    ("sell-all sells only what is available", OPENED.copy(volume=3000, available=1000), 9.00, DEFAULTS,
     sell(Rule.STOP_LOSS, 1000, 9.0528055)),
    ("used level 1 does not fire again", ONE_ADD, 9.20, DEFAULTS, []),
    ("level 2 at 8.80 with the rest of the budget (10457.74): 1100", ONE_ADD, 8.80, DEFAULTS,
     add(1100, 8.80, 10457.74, 2)),
    ("after two adds the stop uses the new cost: 9.4668 × 0.905 = 8.567454", TWO_ADDS, 8.57, DEFAULTS, []),
    ("after two adds the stop fires at 8.56", TWO_ADDS, 8.56, DEFAULTS, sell(Rule.STOP_LOSS, 5200, 8.567454)),
    ("no add level left", TWO_ADDS, 8.60, DEFAULTS, []),
    ("dynamic stop at 12.00 × 0.87 = 10.44", TRIGGERED, 10.44, DEFAULTS, sell(Rule.DYNAMIC_STOP, 1000, 10.44)),
    ("one tick above the dynamic stop", TRIGGERED, 10.45, DEFAULTS, []),
    ("stop-loss before dynamic stop when both hold", TRIGGERED, 9.05, DEFAULTS, sell(Rule.STOP_LOSS, 1000, 9.05)),
    ("no second take-profit once triggered", TRIGGERED.copy(highest_price=10.40), 10.70, DEFAULTS, []),
    ("no add once profit triggered", TRIGGERED.copy(highest_price=10.40), 9.20, DEFAULTS, []),
    ("exits switched off: the add fires below the stop", OPENED, 9.00,
     params(ENABLE_DYNAMIC_STOP_PROFIT=False), add(2200, 9.30, 20000.0, 1)),
    ("exits switched off: no take-profit", OPENED, 11.00, params(ENABLE_DYNAMIC_STOP_PROFIT=False), []),
    ("exits switched off: no dynamic stop", TRIGGERED, 10.00, params(ENABLE_DYNAMIC_STOP_PROFIT=False), []),
    ("adds switched off", OPENED, 9.30, params(ENABLE_ADD_POSITION=False), []),
    ("buying not allowed", OPENED, 9.30, params(ENABLE_ALLOW_BUY=False), []),
    ("selling not allowed: no stop, and no add while the stop holds", OPENED, 9.00,
     params(ENABLE_ALLOW_SELL=False), []),
    ("selling not allowed: adds above the stop still fire", OPENED, 9.30, params(ENABLE_ALLOW_SELL=False),
     add(2100, 9.30, 20000.0, 1)),
    ("no position", OPENED.copy(volume=0, available=0), 9.00, DEFAULTS, []),
    ("invalid price", OPENED, 0.0, DEFAULTS, []),
    ("NaN price", OPENED, math.nan, DEFAULTS, []),
])
def test_evaluate(case, position, price, rule_params, expected):
    assert strategy.evaluate(position, price, rule_params) == expected, case


@pytest.mark.parametrize("available, expected_volume", [
    (2000, 1200), (1250, 700), (250, 100), (199, 100), (100, 100), (50, 50),
])
def test_first_take_profit_rounds_down_to_the_sell_lot(available, expected_volume):
    position = OPENED.copy(volume=max(available, 2000), available=available)
    assert strategy.evaluate(position, 10.61, DEFAULTS) == sell(Rule.TAKE_PROFIT, expected_volume, 10.603286)


@pytest.mark.parametrize("available, expected_volume", [(1000, 600), (350, 210), (300, 300)])
def test_first_take_profit_on_star_board_sells_at_least_200_or_everything(available, expected_volume):
    position = OPENED.copy(stock_code="688981.SH", volume=available, available=available)
    assert strategy.evaluate(position, 10.61, DEFAULTS) == sell(Rule.TAKE_PROFIT, expected_volume, 10.603286)


@pytest.mark.parametrize("highest, expected_stop", [
    (10.49, None),  # +4.9 %: below the first row, no dynamic stop
    (10.50, 10.08),  # +5 %: × 0.96
    (10.99, 10.5504),  # +9.9 %: still × 0.96
    (11.00, 10.23),  # +10 %: × 0.93
    (11.50, 10.35),  # +15 %: × 0.90
    (11.99, 10.791),  # +19.9 %: × 0.90
    (12.00, 10.44),  # +20 %: × 0.87 (12 / 10 − 1 is 0.19999999999999996 in binary)
    (12.99, 11.3013),  # +29.9 %: × 0.87
    (13.00, 11.05),  # +30 %: × 0.85
    (14.00, 11.90),  # +40 %: the last row keeps applying
])
def test_dynamic_stop_steps_through_each_table_row(highest, expected_stop):
    position = TRIGGERED.copy(highest_price=highest)
    assert strategy.trigger_prices(position, DEFAULTS).dynamic_stop_price == expected_stop
    if expected_stop is not None:
        assert strategy.evaluate(position, expected_stop, DEFAULTS) == sell(Rule.DYNAMIC_STOP, 1000, expected_stop)
        assert strategy.evaluate(position, round(expected_stop + 0.01, 2), DEFAULTS) == []


@pytest.mark.parametrize("position, rule_params, expected", [
    (OPENED, DEFAULTS, TriggerPrices(9.0528055, 10.603286, None, 9.30, 1)),
    (ONE_ADD, DEFAULTS, TriggerPrices(8.728230561, 10.223120878, None, 8.80, 2)),
    (TWO_ADDS, DEFAULTS, TriggerPrices(8.567454, 10.034808, None, None, None)),
    (TRIGGERED, DEFAULTS, TriggerPrices(9.05, None, 10.44, None, None)),
    (TRIGGERED.copy(highest_price=10.20), DEFAULTS, TriggerPrices(9.05, None, None, None, None)),
    (OPENED, params(ENABLE_DYNAMIC_STOP_PROFIT=False), TriggerPrices(None, None, None, 9.30, 1)),
    (OPENED, params(ENABLE_ADD_POSITION=False), TriggerPrices(9.0528055, 10.603286, None, None, None)),
    (OPENED.copy(available=0), DEFAULTS, TriggerPrices(9.0528055, 10.603286, None, 9.30, 1)),  # T+1: still shown
    (OPENED.copy(volume=0, available=0), DEFAULTS, TriggerPrices()),
    # 4908 × 10.00 invested: 920.00 left buys one lot only at or below 9.20, under the 9.30 level price.
    (Position(CODE, volume=4908, available=4908, cost_price=10.00, base_cost_price=10.00, highest_price=10.00),
     DEFAULTS, TriggerPrices(9.05, 10.60, None, 9.20, 1)),
    # MAX_POSITION_VALUE reached: no add.
    (Position(CODE, volume=5000, available=5000, cost_price=10.00, base_cost_price=10.00, highest_price=10.00),
     DEFAULTS, TriggerPrices(9.05, 10.60, None, None, None)),
    # Levels not starting at 1.0: index 0 is an add level like the others.
    (OPENED, params(BUY_GRID_LEVELS=[0.95, 0.90]), TriggerPrices(9.0528055, 10.603286, None, 9.50, 0)),
    # Recording index 0 as used by the opening buy changes nothing.
    (OPENED.copy(used_add_levels=(0,)), DEFAULTS, TriggerPrices(9.0528055, 10.603286, None, 9.30, 1)),
])
def test_trigger_prices(position, rule_params, expected):
    assert strategy.trigger_prices(position, rule_params) == expected


def test_budget_limited_add_buys_one_lot_at_its_trigger():
    position = Position(CODE, volume=4908, available=4908, cost_price=10.00, base_cost_price=10.00,
                        highest_price=10.00)
    assert strategy.evaluate(position, 9.21, DEFAULTS) == []
    assert strategy.evaluate(position, 9.20, DEFAULTS) == add(100, 9.20, 920.0, 1)


def test_star_board_add_needs_200_shares():
    # 1840.00 left: STAR buys need at least 200 shares, so at most 9.20 a share (a main-board lot: 18.40).
    position = Position("688981.SH", volume=4816, available=4816, cost_price=10.00, base_cost_price=10.00,
                        highest_price=10.00)
    assert strategy.trigger_prices(position, DEFAULTS).next_add_price == 9.20
    assert strategy.evaluate(position, 9.21, DEFAULTS) == []
    assert strategy.evaluate(position, 9.20, DEFAULTS) == add(200, 9.20, 1840.0, 1)


def test_evaluate_agrees_with_trigger_prices_at_every_tick():
    """Between 8.00 and 11.00 the rule that fires is exactly the one whose trigger price the tick reached."""
    triggers = strategy.trigger_prices(OPENED, DEFAULTS)
    for cents in range(800, 1101):
        price = cents / 100
        rules = [a.rule for a in strategy.evaluate(OPENED, price, DEFAULTS)]
        if price <= triggers.stop_loss_price:
            assert rules == [Rule.STOP_LOSS], price
        elif price >= triggers.take_profit_price:
            assert rules == [Rule.TAKE_PROFIT], price
        elif price <= triggers.next_add_price:
            assert rules == [Rule.ADD_POSITION], price
        else:
            assert rules == [], price


def test_first_take_profit_precedes_add_when_both_hold():
    # An unusual state (cost far under the base after adds, tight levels): both conditions hold at 9.60.
    position = Position(CODE, volume=1000, available=1000, cost_price=9.00, base_cost_price=10.00,
                        highest_price=10.00)
    rule_params = params(BUY_GRID_LEVELS=[1.0, 0.99])
    assert strategy.trigger_prices(position, rule_params).next_add_price == 9.90
    assert strategy.evaluate(position, 9.60, rule_params) == sell(Rule.TAKE_PROFIT, 600, 9.54)


def test_macd_exit_is_a_sell_all_exit_after_stop_loss():
    with_sell = params(ENABLE_MACD_SELL=True)
    assert strategy.evaluate(OPENED, 10.00, with_sell, macd_exit=True) == sell(Rule.MACD_SELL, 2000, 10.00)
    assert strategy.evaluate(OPENED, 9.00, with_sell, macd_exit=True) == sell(Rule.STOP_LOSS, 2000, 9.0528055)
    assert strategy.evaluate(OPENED, 10.00, DEFAULTS, macd_exit=True) == []  # ENABLE_MACD_SELL off by default
    # While the MACD exit holds, no add (an exit condition dominates).
    assert strategy.evaluate(OPENED.copy(available=0), 9.30, with_sell, macd_exit=True) == []


def test_two_levels_gapped_through_fill_highest_first_then_reevaluate():
    rule_params = params(STOP_LOSS_RATIO=-0.2)  # stop 8.00248 stays out of the way
    position = OPENED
    first = strategy.evaluate(position, 8.70, rule_params)
    assert first == add(2200, 9.30, 20000.0, 1)  # 20000 / 8.70 = 2298.8 → 2200
    # 2200 × 8.70 = 19140.00, fees 5.74 + 0.19 = 5.93
    position = strategy.apply_buy(position, CODE, 8.70, 2200, 5.93, date(2024, 3, 4), level_index=1)
    assert position.volume == 4200 and position.cost_price == pytest.approx(39152.13 / 4200, abs=1e-12)
    second = strategy.evaluate(position, 8.70, rule_params)
    assert second == add(1200, 8.80, 10847.87, 2)  # 50000 − 39152.13 = 10847.87; / 8.70 = 1246.9 → 1200
    position = strategy.apply_buy(position, CODE, 8.70, 1200, 5.10, date(2024, 3, 4), level_index=2)
    assert position.used_add_levels == (1, 2)
    assert strategy.evaluate(position, 8.70, rule_params) == []


def test_apply_buy_opens_episode_and_averages_cost_with_fees():
    opened = strategy.apply_buy(None, CODE, 10.00, 2000, 6.20, date(2024, 3, 1))
    assert opened == Position(CODE, volume=2000, available=0, cost_price=10.0031, base_cost_price=10.00,
                              current_price=10.00, open_date=date(2024, 3, 1), highest_price=10.00)
    added = strategy.apply_buy(opened.copy(available=2000, highest_price=10.40), CODE, 9.30, 2100, 6.06,
                               date(2024, 3, 4), level_index=1)
    assert (added.volume, added.available, added.base_cost_price, added.highest_price) == (4100, 2000, 10.00, 10.40)
    assert added.cost_price == pytest.approx(39542.26 / 4100, abs=1e-12)
    assert added.used_add_levels == (1,) and added.open_date == date(2024, 3, 1)


def test_apply_sell_keeps_cost_and_marks_first_take_profit():
    after_tp = strategy.apply_sell(OPENED, 1200, Rule.TAKE_PROFIT)
    assert (after_tp.volume, after_tp.available, after_tp.cost_price, after_tp.profit_triggered) == \
        (800, 800, OPENED.cost_price, True)
    after_stop = strategy.apply_sell(OPENED, 2000, Rule.STOP_LOSS)
    assert (after_stop.volume, after_stop.profit_triggered) == (0, False)
    with pytest.raises(ValueError):
        strategy.apply_sell(OPENED.copy(available=0), 100, Rule.STOP_LOSS)


def test_add_level_fires_once_per_episode_and_a_new_episode_starts_fresh():
    position = strategy.apply_buy(OPENED, CODE, 9.30, 2100, 6.06, date(2024, 3, 4), level_index=1)
    position = position.copy(available=position.volume)
    assert strategy.evaluate(position, 9.30, DEFAULTS) == []  # level 1 used, level 2 at 8.80 not reached
    # Take profit, then everything goes: the episode ends with level 1 used and profit triggered.
    position = strategy.apply_sell(position, 2400, Rule.TAKE_PROFIT)
    position = strategy.apply_sell(position, 1700, Rule.DYNAMIC_STOP)
    assert position.volume == 0 and position.profit_triggered and position.used_add_levels == (1,)
    fresh = strategy.apply_buy(position, CODE, 20.00, 1000, 6.20, date(2024, 5, 6))
    assert fresh == Position(CODE, volume=1000, available=0, cost_price=20.0062, base_cost_price=20.00,
                             current_price=20.00, open_date=date(2024, 5, 6), highest_price=20.00)
    # 20.00 × 0.93 = 18.60: level 1 fires again in the new episode (bought 1000 × 20.0062 = 20006.20, 20000 left).
    assert strategy.evaluate(fresh, 18.60, DEFAULTS) == add(1000, 18.60, 20000.0, 1)


NAN = float("nan")


@pytest.mark.parametrize("prev_hist, hist, mas, overrides, expected", [
    (-0.01, 0.02, (10, 9, 8, 7), {}, Rule.MACD_BUY),
    (0.0, 0.02, (10, 9, 8, 7), {}, Rule.MACD_BUY),  # from exactly 0 counts as a cross
    (0.01, 0.02, (10, 9, 8, 7), {}, None),  # already positive: no cross
    (-0.01, 0.0, (10, 9, 8, 7), {}, None),  # must become > 0
    (-0.01, 0.02, (10, 9, 9, 7), {}, None),  # MA20 == MA30: not strictly aligned
    (-0.01, 0.02, (7, 8, 9, 10), {}, None),  # falling MAs
    (-0.01, 0.02, (10, 9, 8, NAN), {}, None),  # MA60 not yet available
    (-0.01, 0.02, (None, None, None, None), {"ENABLE_MA_FILTER": False}, Rule.MACD_BUY),
    (-0.01, 0.02, (10, 9, 8, 7), {"ENABLE_MACD_BUY": False}, None),
    (-0.01, 0.02, (10, 9, 8, 7), {"ENABLE_ALLOW_BUY": False}, None),
    (NAN, 0.02, (10, 9, 8, 7), {}, None),  # warm-up
    (0.01, -0.02, (), {}, None),  # ENABLE_MACD_SELL is off by default
    (0.01, -0.02, (), {"ENABLE_MACD_SELL": True}, Rule.MACD_SELL),
    (0.0, -0.01, (), {"ENABLE_MACD_SELL": True}, Rule.MACD_SELL),  # from exactly 0
    (0.0, 0.0, (), {"ENABLE_MACD_SELL": True}, None),
    (-0.01, -0.02, (), {"ENABLE_MACD_SELL": True}, None),
    (0.01, -0.02, (), {"ENABLE_MACD_SELL": True, "ENABLE_ALLOW_SELL": False}, None),
])
def test_macd_signal(prev_hist, hist, mas, overrides, expected):
    assert strategy.macd_signal(prev_hist, hist, params(**overrides), *mas) is expected


def test_rule_params_from_config_store_and_mapping(tmp_path):
    store = ConfigStore(Database(tmp_path / "config.db"),
                        run_overrides={"STOP_LOSS_RATIO": -0.08, "BUY_GRID_LEVELS": [1.0, 0.9]})
    from_store = RuleParams.from_settings(store)
    assert from_store.stop_loss_ratio == -0.08 and from_store.add_levels == (1.0, 0.9)
    assert from_store.dynamic_take_profit == ((0.05, 0.96), (0.10, 0.93), (0.15, 0.90), (0.20, 0.87), (0.30, 0.85))
    store.update({"ENABLE_ADD_POSITION": False})
    assert RuleParams.from_settings(store).add_enabled is False
    assert DEFAULTS.position_unit == 20000.0 and DEFAULTS.max_position_value == 50000.0
    with pytest.raises(KeyError):
        RuleParams.from_settings({"STOP_LOSS_RATIO": -0.1})


@pytest.mark.parametrize("position, rule_params, shown", [
    # the first add level (index 1 after the opening 1.0) reads 第1档 at its own price
    (OPENED, DEFAULTS, {"state": "ok", "label": "第1档", "price": 9.30, "text": "9.3（第1档）"}),
    (ONE_ADD, DEFAULTS, {"state": "ok", "label": "第2档", "price": 8.80, "text": "8.8（第2档）"}),
    # without an opening 1.0 in the table the first entry is the first add
    (OPENED, params(BUY_GRID_LEVELS=[0.95, 0.9]), {"state": "ok", "label": "第1档", "price": 9.50,
                                                  "text": "9.5（第1档）"}),
    # 920 元 of budget left buys a lot only at 9.20, under the 9.30 level: the table says so, not 9.20
    (Position(CODE, volume=4908, available=4908, cost_price=10.00, base_cost_price=10.00, highest_price=10.00),
     DEFAULTS, {"state": "budget_short", "label": "第1档", "price": None, "text": "额度不足"}),
    # a level at or below the stop-loss can never be reached: the stop sells first
    (OPENED, params(BUY_GRID_LEVELS=[1.0, 0.90], STOP_LOSS_RATIO=-0.095),
     {"state": "below_stop", "label": "第1档", "price": 9.00, "text": "9（第1档，低于止损价，无法到达）"}),
])
def test_next_add_reads_for_a_person(position, rule_params, shown):
    import webapi.views as web_views

    view = web_views.next_add_view(CODE, strategy.trigger_prices(position, rule_params))
    assert {k: view[k] for k in shown} == shown
