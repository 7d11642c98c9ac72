"""Which source an order comes from (STYLE "Budgets belong to sources", DESIGN §8a): the one place that maps a
rule onto the budget it draws from. Breakers, budgets and halts apply per source; protective exits (the
sell-all exits and a re-priced sell of one) belong to no source and are never blocked by them."""
from __future__ import annotations

from enum import Enum
from typing import Optional

from core.models import Rule


class OrderSource(str, Enum):
    RULES = "rules"  # the position rules' orders that are not protective: adds, MACD entries, first take-profit
    GRID = "grid"
    ORDER_FILE = "order_file"
    WATCH = "watch"
    MANUAL = "manual"
    PROTECTIVE = "protective"  # stop-loss, dynamic take-profit, MACD sell-all: no budget, no breaker
    CHORES = "chores"  # issue 28 §3: subscriptions and the reverse repo (chores/)

    @property
    def label(self) -> str:
        return SOURCE_LABELS[self]


SOURCE_LABELS = {
    OrderSource.RULES: "策略规则", OrderSource.GRID: "网格交易", OrderSource.ORDER_FILE: "委托文件",
    OrderSource.WATCH: "盯盘任务", OrderSource.MANUAL: "手动委托", OrderSource.PROTECTIVE: "保护性卖出",
    OrderSource.CHORES: "申购与逆回购",
}

PROTECTIVE_EXITS = frozenset({Rule.STOP_LOSS, Rule.DYNAMIC_STOP, Rule.MACD_SELL})

_SOURCE_OF_RULE = {
    Rule.STOP_LOSS: OrderSource.PROTECTIVE, Rule.DYNAMIC_STOP: OrderSource.PROTECTIVE,
    Rule.MACD_SELL: OrderSource.PROTECTIVE,
    Rule.TAKE_PROFIT: OrderSource.RULES, Rule.ADD_POSITION: OrderSource.RULES, Rule.MACD_BUY: OrderSource.RULES,
    Rule.GRID_BUY: OrderSource.GRID, Rule.GRID_SELL: OrderSource.GRID,
    Rule.ORDER_FILE: OrderSource.ORDER_FILE,
    Rule.WATCH_BUY: OrderSource.WATCH, Rule.WATCH_SELL: OrderSource.WATCH,
    Rule.MANUAL: OrderSource.MANUAL,
    Rule.IPO_SUBSCRIBE: OrderSource.CHORES, Rule.REPO_LEND: OrderSource.CHORES,
}


def source_of(rule: Rule, origin: Optional[Rule] = None) -> OrderSource:
    """The source of an order placed under `rule`; a re-priced sell (`Rule.REPRICE`) takes the source of the
    order it continues (`origin`). A re-price whose origin is unknown counts as manual: it is never blocked
    (it may continue a stop-loss) and never trips an automatic source."""
    if rule is Rule.REPRICE:
        if origin is None or origin is Rule.REPRICE:
            return OrderSource.MANUAL
        return source_of(origin)
    return _SOURCE_OF_RULE[rule]


def is_protective(rule: Rule, origin: Optional[Rule] = None) -> bool:
    """A protective exit: the sell-all exits, and a re-priced sell that continues one."""
    return source_of(rule, origin) is OrderSource.PROTECTIVE
