"""Domain types shared by every module: quotes, positions, orders, fills, signals, errors,
and the broker interface that the simulated and the live broker both implement."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from typing import Optional, Protocol


class Side(str, Enum):
    BUY = "buy"
    SELL = "sell"

    @property
    def label(self) -> str:
        return "买入" if self is Side.BUY else "卖出"


class OrderStatus(str, Enum):
    """Our order states; the live broker maps xtconstant codes onto these."""

    PENDING_SUBMIT = "pending_submit"  # journaled, not yet acknowledged by the broker
    SUBMITTED = "submitted"  # 48/49: accepted locally, not yet reported to the exchange
    OPEN = "open"  # 50: resting at the exchange
    PARTIALLY_FILLED = "partially_filled"  # 55
    CANCEL_PENDING = "cancel_pending"  # 51/52: cancel requested, not yet cancelled
    CANCELLED = "cancelled"  # 53/54 (53 = partly filled, rest cancelled)
    FILLED = "filled"  # 56
    REJECTED = "rejected"  # 57 or refused before sending
    UNKNOWN = "unknown"  # lost track (e.g. crash between journal and send); reconciled later

    @property
    def is_terminal(self) -> bool:
        return self in (OrderStatus.CANCELLED, OrderStatus.FILLED, OrderStatus.REJECTED)

    @property
    def is_open(self) -> bool:
        return not self.is_terminal


class Rule(str, Enum):
    """Why an order exists; stored on signals, orders and trade records."""

    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"  # first take-profit
    DYNAMIC_STOP = "dynamic_take_profit"  # trailing take-profit (DESIGN §7 names it so in trade records)
    ADD_POSITION = "add_position"
    MACD_BUY = "macd_buy"
    MACD_SELL = "macd_sell"
    GRID_BUY = "grid_buy"
    GRID_SELL = "grid_sell"
    MANUAL = "manual"
    REPRICE = "reprice"  # a timed-out sell re-placed at a more aggressive price
    ORDER_FILE = "order_file"  # a line of an order file from another system (orderfiles.intake)
    WATCH_BUY = "watch_buy"  # a watch task's buy action (issue 17)
    WATCH_SELL = "watch_sell"
    IPO_SUBSCRIBE = "ipo_subscribe"  # issue 28 §3: a new share / new bond subscription (chores/)
    REPO_LEND = "repo_lend"  # issue 28 §3: overnight treasury reverse repo, a sell at a rate (chores/)

    @property
    def side(self) -> Side:
        buys = (Rule.ADD_POSITION, Rule.MACD_BUY, Rule.GRID_BUY, Rule.WATCH_BUY, Rule.IPO_SUBSCRIBE)
        return Side.BUY if self in buys else Side.SELL

    @property
    def label(self) -> str:
        return RULE_LABELS[self]

    @classmethod
    def _missing_(cls, value):
        """Rows written before the rename (issue 20) still read back: "dynamic_stop" is the trailing exit."""
        return cls.DYNAMIC_STOP if value == "dynamic_stop" else None


RULE_LABELS = {
    Rule.STOP_LOSS: "止损",
    Rule.TAKE_PROFIT: "首次止盈",
    Rule.DYNAMIC_STOP: "动态止盈",
    Rule.ADD_POSITION: "补仓",
    Rule.MACD_BUY: "MACD买入",
    Rule.MACD_SELL: "MACD卖出",
    Rule.GRID_BUY: "网格买入",
    Rule.GRID_SELL: "网格卖出",
    Rule.MANUAL: "手动",
    Rule.REPRICE: "改价重报",
    Rule.ORDER_FILE: "委托文件",
    Rule.WATCH_BUY: "盯盘买入",
    Rule.WATCH_SELL: "盯盘卖出",
    Rule.IPO_SUBSCRIBE: "新股新债申购",
    Rule.REPO_LEND: "国债逆回购",
}


class SignalStatus(str, Enum):
    PENDING = "pending"
    EXECUTING = "executing"
    EXECUTED = "executed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    DISMISSED = "dismissed"  # a person chose to ignore it (issue 14)

    @property
    def label(self) -> str:
        return SIGNAL_STATUS_LABELS[self]


SIGNAL_STATUS_LABELS = {
    SignalStatus.PENDING: "待执行", SignalStatus.EXECUTING: "执行中", SignalStatus.EXECUTED: "已执行",
    SignalStatus.REJECTED: "已拒绝", SignalStatus.EXPIRED: "已过期", SignalStatus.DISMISSED: "已忽略",
}


class TradingError(Exception):
    """A domain error with a machine code and a Chinese message for people."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message


class OrderRejected(TradingError):
    """An order refused before or by the broker."""


class BrokerUnavailable(TradingError):
    """The broker cannot be reached (not connected, QMT not running)."""


class DataUnavailable(TradingError):
    """No usable market data (source down, stale, zero or NaN price)."""


@dataclass(frozen=True)
class Quote:
    """A validated market quote. Data sources never build one with a price <= 0 or NaN."""

    code: str
    price: float
    prev_close: float
    time: datetime
    source: str
    limit_up: Optional[float] = None
    limit_down: Optional[float] = None
    open: Optional[float] = None
    high: Optional[float] = None
    low: Optional[float] = None
    volume: Optional[float] = None
    bid1: Optional[float] = None
    ask1: Optional[float] = None
    name: str = ""


@dataclass
class Position:
    """One row of the position table (same columns as the SQLite `positions` table)."""

    stock_code: str
    stock_name: str = ""
    volume: int = 0
    available: int = 0
    cost_price: float = 0.0  # average cost per share including buy fees
    base_cost_price: float = 0.0  # price of the first buy of this episode
    current_price: float = 0.0
    market_value: float = 0.0
    profit_ratio: float = 0.0  # percent
    last_update: Optional[datetime] = None
    open_date: Optional[date] = None
    profit_triggered: bool = False
    highest_price: float = 0.0
    stop_loss_price: float = 0.0
    used_add_levels: tuple[int, ...] = ()  # indexes into BUY_GRID_LEVELS used in this episode

    def copy(self, **changes) -> "Position":
        """A shallow copy (all fields are immutable values), built without `dataclasses.replace` because the
        monitor copies every position on every pass and replace() is several times slower."""
        clone = object.__new__(Position)
        clone.__dict__.update(self.__dict__)
        for key, value in changes.items():
            if not hasattr(clone, key):
                raise TypeError(f"Position has no field {key!r}")
            setattr(clone, key, value)
        return clone


@dataclass(frozen=True)
class OrderRequest:
    """What the executor asks a broker to do. `client_id` travels as the broker's order remark."""

    client_id: str
    stock_code: str
    side: Side
    volume: int
    price: float
    rule: Rule = Rule.MANUAL
    signal_id: Optional[int] = None


@dataclass
class Order:
    """The state of one order as last reported by a broker."""

    client_id: str
    stock_code: str
    side: Side
    volume: int
    price: float
    status: OrderStatus
    order_id: str = ""  # broker order id
    filled_volume: int = 0
    filled_amount: float = 0.0
    time: Optional[datetime] = None
    reason: str = ""


@dataclass(frozen=True)
class Fill:
    """One execution reported by a broker. `fill_id` is unique per broker and makes fills idempotent."""

    fill_id: str
    order_id: str
    client_id: str
    stock_code: str
    side: Side
    price: float
    volume: int
    time: datetime
    commission: float = 0.0
    stamp_duty: float = 0.0
    transfer_fee: float = 0.0

    @property
    def amount(self) -> float:
        return round(self.price * self.volume, 2)

    @property
    def fees(self) -> float:
        return round(self.commission + self.stamp_duty + self.transfer_fee, 2)


@dataclass(frozen=True)
class Asset:
    cash: float  # available cash
    frozen_cash: float
    market_value: float
    total_asset: float


@dataclass(frozen=True)
class BrokerPosition:
    """A position as the broker sees it; authoritative for volume, available and cost in live mode."""

    stock_code: str
    volume: int
    available: int
    cost_price: float
    market_value: float = 0.0
    stock_name: str = ""


@dataclass
class Signal:
    """A detected trading signal: one row of the `signals` table."""

    stock_code: str
    rule: Rule
    volume: int  # shares to trade; for buys sized by amount, the volume at the observed price
    trigger_price: float
    observed_price: float
    created_at: datetime
    id: Optional[int] = None
    status: SignalStatus = SignalStatus.PENDING
    reason: str = ""
    order_id: str = ""  # our client order id once executed
    amount: float = 0.0  # buy amount in CNY when the rule sizes by money
    level_index: Optional[int] = None  # add level or grid level the signal belongs to
    episode: str = ""  # open date of the position episode the signal belongs to
    grid_session_id: Optional[int] = None
    seen_at: Optional[datetime] = None  # wall-clock time of the latest detection: a person's age, not the replay's
    hold_count: int = 0  # times held back while queued (source halted or budget used up, an exit refused)
    held_at: Optional[datetime] = None  # wall-clock time of the last hold-back

    @property
    def side(self) -> Side:
        return self.rule.side


class BrokerListener(Protocol):
    """Receives broker events. Brokers call these from their own threads; implementations must not block long.
    A listener must tolerate (brokers/CONTRACT.md §3) events twice or more, out of order, and before the
    place_order that caused them has returned: fills are booked once by `fill_id`, order states move forward."""

    def on_order_update(self, order: Order) -> None: ...

    def on_fill(self, fill: Fill) -> None: ...


class Broker(Protocol):
    """One interface over the simulated and the live back-ends (the vnpy gateway idea); the written contract is
    brokers/CONTRACT.md, proven for every back-end by test/conformance."""

    mode: str  # "simulation" | "live"

    def set_listener(self, listener: BrokerListener) -> None: ...

    def connect(self) -> None: ...

    def is_connected(self) -> bool: ...

    def place_order(self, request: OrderRequest) -> None:
        """Send an order; `client_id` travels as the remark, a used one is refused. Returns: accepted for sending
        (acknowledgement or a rejection with the venue's message arrives as events). OrderRejected: definitely
        refused. BrokerUnavailable: definitely not sent. Anything else (OutcomeUnknown): 「结果未知」, found later
        by remark, never re-sent."""

    def cancel_order(self, order_id: str) -> None:
        """Cancel by broker order id or client id. The outcome arrives as events; a refusal (OrderRejected, or
        an event with the working state and the reason) never changes the order's state."""

    def query_asset(self) -> Asset: ...

    def query_positions(self) -> list[BrokerPosition]: ...

    def query_orders(self) -> list[Order]: ...

    def query_trades(self) -> list[Fill]:
        """Executions (at least today's), each with the same `fill_id` its push carried. Every query returns
        within the back-end's own deadline or raises BrokerUnavailable."""

    def close(self) -> None: ...


@dataclass
class Heartbeat:
    """Liveness record of one named thread, read by the watchdog and /api/health."""

    name: str
    last_beat: float = 0.0
    restarts: int = 0
    alive: bool = False
    alarm: str = ""
    restart_times: list[float] = field(default_factory=list)
