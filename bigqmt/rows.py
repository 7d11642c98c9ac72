"""Pure conversions of big QMT's ORDER / DEAL / ACCOUNT / POSITION rows (as the bridge forwards them: the `m_*`
attributes in a dict) into the daemon's domain types. Field meanings: shared/reference/bigqmt_api.md §2."""
from __future__ import annotations

from datetime import datetime
from typing import Callable, Optional

from core.models import Asset, BrokerPosition, OrderStatus, Side

NOT_SET = 2147483647  # QMT's error id "not set": the counter's code is inside the message text
REMARK_MARKER = "_&&&_"  # orderError_callback's strategyName is "策略名_&&&_投资备注"
STATUS = {48: OrderStatus.SUBMITTED, 49: OrderStatus.SUBMITTED, 50: OrderStatus.OPEN,
          51: OrderStatus.CANCEL_PENDING, 52: OrderStatus.CANCEL_PENDING, 53: OrderStatus.CANCELLED,
          54: OrderStatus.CANCELLED, 55: OrderStatus.PARTIALLY_FILLED, 56: OrderStatus.FILLED,
          57: OrderStatus.REJECTED}
EXCHANGES = {"SH": "SH", "SSE": "SH", "SZ": "SZ", "SZSE": "SZ", "BJ": "BJ", "BSE": "BJ"}


def status_of(row: dict) -> OrderStatus:
    try:
        return STATUS.get(int(row.get("m_nOrderStatus")), OrderStatus.UNKNOWN)
    except (TypeError, ValueError):
        return OrderStatus.UNKNOWN


def side_of(row: dict) -> Optional[Side]:
    """m_nOffsetFlag 48 buy / 49 sell (m_nDirection is always 48 for stocks); m_nOpType 23/24 as a fallback.
    None for anything else (credit, ETF creation ...)."""
    flag, op = _int(row.get("m_nOffsetFlag")), _int(row.get("m_nOpType"))
    if flag == 48 or (flag is None and op == 23):
        return Side.BUY
    if flag == 49 or (flag is None and op == 24):
        return Side.SELL
    return None


def stock_code(row: dict) -> str:
    """Live pushes carry a bare code: append the exchange."""
    code = str(row.get("m_strInstrumentID") or "")
    if "." in code:
        return code
    exchange = EXCHANGES.get(str(row.get("m_strExchangeID") or "").upper(), str(row.get("m_strExchangeID") or ""))
    return f"{code}.{exchange}" if exchange else code


def remark_of(row: dict) -> str:
    """Our client id: the remark (userOrderId), else the strategy name we also set it to (m_strSource)."""
    return str(row.get("m_strRemark") or row.get("m_strSource") or "")


def remark_of_error(args: dict) -> str:
    name = str(args.get("strategyName") or "")
    return name.split(REMARK_MARKER, 1)[1] if REMARK_MARKER in name else name


def rejection_reason(row: dict) -> str:
    text = str(row.get("m_strCancelInfo") or row.get("m_strErrorMsg") or "")
    code = _int(row.get("m_nErrorID"))
    if code not in (None, 0, NOT_SET) and str(code) not in text:
        text = f"{text}（错误码 {code}）"
    return text


def order_reason(row: dict) -> str:
    return rejection_reason(row) if status_of(row) is OrderStatus.REJECTED else ""


def commission_of(row: dict) -> float:
    """Both m_dCommission and the misspelt m_dComssion exist; the first non-zero counts."""
    for name in ("m_dCommission", "m_dComssion"):
        value = _float(row.get(name))
        if value:
            return value
    return 0.0


def broker_time(date_text, time_text, fallback: Callable[[], datetime]) -> datetime:
    """'20261208' + '093001' (or '09:30:01') -> a naive market-time datetime; the clock when unreadable."""
    digits = "".join(ch for ch in f"{date_text or ''}{time_text or ''}" if ch.isdigit())
    try:
        return datetime.strptime(digits[:14], "%Y%m%d%H%M%S")
    except ValueError:
        return fallback()


def asset_of(row: dict) -> Asset:
    market_value = _float(row.get("m_dInstrumentValue")) or _float(row.get("m_dStockValue"))
    return Asset(cash=_float(row.get("m_dAvailable")), frozen_cash=_float(row.get("m_dFrozenCash")),
                 market_value=market_value, total_asset=_float(row.get("m_dBalance")))


def position_of(row: dict) -> BrokerPosition:
    return BrokerPosition(stock_code=stock_code(row), volume=_int(row.get("m_nVolume")) or 0,
                          available=_int(row.get("m_nCanUseVolume")) or 0, cost_price=_float(row.get("m_dOpenPrice")),
                          market_value=_float(row.get("m_dMarketValue")),
                          stock_name=str(row.get("m_strInstrumentName") or ""))


def _int(value) -> Optional[int]:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float(value) -> float:
    try:
        return float(value or 0.0)
    except (TypeError, ValueError):
        return 0.0
