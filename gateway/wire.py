"""The gateway's wire format: the broker contract's domain types (orders, fills, assets, positions, quotes) and its
errors as JSON objects and back. Pure functions; both the server and the client use them, so the two cannot drift."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Optional

from core.models import (Asset, BrokerPosition, BrokerUnavailable, Fill, Order, OrderRejected, OrderRequest,
                         OrderStatus, Quote, Rule, Side, TradingError)
from qmt.broker_guard import OutcomeUnknown

# what a place-order answer says happened (stored per remark on the gateway: a retry gets the same one back)
OUTCOME_ACCEPTED, OUTCOME_REJECTED, OUTCOME_UNKNOWN = "accepted", "rejected", "unknown"
# event kinds of the journaled stream
EVENT_ORDER, EVENT_FILL, EVENT_LINK, EVENT_ANOMALY = "order", "fill", "link", "anomaly"


def dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def loads(body: bytes) -> Any:
    return json.loads(body.decode("utf-8")) if body else None


def _time(value: Optional[datetime]) -> Optional[str]:
    return value.isoformat() if value is not None else None


def _parse_time(value: Optional[str]) -> Optional[datetime]:
    return datetime.fromisoformat(value) if value else None


# ---- requests ---------------------------------------------------------------------------------------------------
def request_to_json(request: OrderRequest) -> dict:
    return {"client_id": request.client_id, "stock_code": request.stock_code, "side": request.side.value,
            "volume": int(request.volume), "price": float(request.price), "rule": request.rule.value,
            "signal_id": request.signal_id}


def request_from_json(data: dict) -> OrderRequest:
    """Raises ValueError/KeyError/TypeError on a malformed body (the server answers 400)."""
    client_id = str(data["client_id"])
    if not client_id:
        raise ValueError("client_id")
    return OrderRequest(client_id=client_id, stock_code=str(data["stock_code"]), side=Side(data["side"]),
                        volume=int(data["volume"]), price=float(data["price"]), rule=Rule(data.get("rule", "manual")),
                        signal_id=data.get("signal_id"))


# ---- orders and fills ---------------------------------------------------------------------------------------------
def order_to_json(order: Order) -> dict:
    return {"client_id": order.client_id, "stock_code": order.stock_code, "side": order.side.value,
            "volume": int(order.volume), "price": float(order.price), "status": order.status.value,
            "order_id": order.order_id, "filled_volume": int(order.filled_volume),
            "filled_amount": float(order.filled_amount), "time": _time(order.time), "reason": order.reason}


def order_from_json(data: dict) -> Order:
    return Order(client_id=data["client_id"], stock_code=data["stock_code"], side=Side(data["side"]),
                 volume=int(data["volume"]), price=float(data["price"]), status=OrderStatus(data["status"]),
                 order_id=data.get("order_id", ""), filled_volume=int(data.get("filled_volume", 0)),
                 filled_amount=float(data.get("filled_amount", 0.0)), time=_parse_time(data.get("time")),
                 reason=data.get("reason", ""))


def fill_to_json(fill: Fill) -> dict:
    return {"fill_id": fill.fill_id, "order_id": fill.order_id, "client_id": fill.client_id,
            "stock_code": fill.stock_code, "side": fill.side.value, "price": float(fill.price),
            "volume": int(fill.volume), "time": _time(fill.time), "commission": float(fill.commission),
            "stamp_duty": float(fill.stamp_duty), "transfer_fee": float(fill.transfer_fee)}


def fill_from_json(data: dict) -> Fill:
    return Fill(fill_id=data["fill_id"], order_id=data["order_id"], client_id=data["client_id"],
                stock_code=data["stock_code"], side=Side(data["side"]), price=float(data["price"]),
                volume=int(data["volume"]), time=_parse_time(data["time"]), commission=float(data["commission"]),
                stamp_duty=float(data["stamp_duty"]), transfer_fee=float(data["transfer_fee"]))


# ---- account --------------------------------------------------------------------------------------------------------
def asset_to_json(asset: Asset) -> dict:
    return {"cash": asset.cash, "frozen_cash": asset.frozen_cash, "market_value": asset.market_value,
            "total_asset": asset.total_asset}


def asset_from_json(data: dict) -> Asset:
    return Asset(cash=float(data["cash"]), frozen_cash=float(data["frozen_cash"]),
                 market_value=float(data["market_value"]), total_asset=float(data["total_asset"]))


def position_to_json(position: BrokerPosition) -> dict:
    return {"stock_code": position.stock_code, "volume": position.volume, "available": position.available,
            "cost_price": position.cost_price, "market_value": position.market_value,
            "stock_name": position.stock_name}


def position_from_json(data: dict) -> BrokerPosition:
    return BrokerPosition(stock_code=data["stock_code"], volume=int(data["volume"]), available=int(data["available"]),
                          cost_price=float(data["cost_price"]), market_value=float(data.get("market_value", 0.0)),
                          stock_name=data.get("stock_name", ""))


# ---- quotes ----------------------------------------------------------------------------------------------------------
_QUOTE_OPTIONAL = ("limit_up", "limit_down", "open", "high", "low", "volume", "bid1", "ask1")


def quote_to_json(quote: Quote) -> dict:
    data = {"code": quote.code, "price": quote.price, "prev_close": quote.prev_close, "time": _time(quote.time),
            "source": quote.source, "name": quote.name}
    data.update({key: getattr(quote, key) for key in _QUOTE_OPTIONAL})
    return data


def quote_from_json(data: dict) -> Quote:
    return Quote(code=data["code"], price=float(data["price"]), prev_close=float(data["prev_close"]),
                 time=_parse_time(data["time"]), source=data.get("source", ""), name=data.get("name", ""),
                 **{key: data.get(key) for key in _QUOTE_OPTIONAL})


# ---- errors -----------------------------------------------------------------------------------------------------------
def error_to_json(exc: TradingError) -> dict:
    kind = "unknown" if isinstance(exc, OutcomeUnknown) else \
        "unavailable" if isinstance(exc, BrokerUnavailable) else "rejected"
    return {"kind": kind, "code": exc.code, "message": exc.message}


def error_from_json(data: dict) -> TradingError:
    """The same exception class the wrapped back-end raised on the gateway."""
    code, message = str(data.get("code", "GATEWAY_ERROR")), str(data.get("message", "网关返回错误"))
    kind = data.get("kind")
    if kind == "unknown":
        return OutcomeUnknown(code, message)
    if kind == "unavailable":
        return BrokerUnavailable(code, message)
    return OrderRejected(code, message)
