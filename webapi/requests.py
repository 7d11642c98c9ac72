"""Parsing API requests (the route modules call it as `req`): a JSON body in, typed requests out (`BuyOrder`,
`SellOrder`, ...), path and query parameters checked and normalized, or an ApiError with the HTTP status, a machine
code and a Chinese message. Pure functions; no component is touched here. The declared shapes live in
webapi/request_shapes.py, the error and the one-value checks in webapi/request_values.py; both are re-exported
here, where the routes read them."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from typing import Any, Mapping, Optional

import market_rules
from core.models import OrderStatus, Rule, SignalStatus
from webapi.request_shapes import (  # noqa: F401 (also re-exported: the routes read them as `req.<name>`)
                                   BUY, CHECK_ORDER, CONFIG_CHANGES, CONFIG_KEY, DISMISS, EMPTY, F_AMOUNT, F_PRICE,
                                   F_REASON, F_STOCK_CODE, Field, GRID_START, HISTORY_QUERY, LIMIT_QUERY,
                                   NON_BLANK_PATTERN, ORDERS_QUERY, ORDER_FILE_UPLOAD, ORDER_ID, PATH_PARAMS, Q_DATE,
                                   Q_END, Q_FORMAT, Q_LIMIT, Q_RULE, Q_SIGNAL_STATUS, Q_START, Q_STATUS, Q_STOCK_CODE,
                                   REASON, RESUME, ROLLBACK, SELL, SIGNAL_HISTORY_QUERY, SIGNAL_ID,
                                   STOCK_CODE_PATTERN, STOCK_POOL, Shape, TRADE_RECORDS_QUERY, Variant,
                                   config_changes_schema, config_value_schema, nullable)
from webapi.request_values import (  # noqa: F401 (also re-exported: the routes read them as `req.<name>`)
                                   ApiError, CONFIG_KEY_PATTERN, MAX_AMOUNT, MAX_ID, MAX_LIST_LIMIT, MAX_PRICE,
                                   MAX_RANDOM_BUY_COUNT, MAX_VOLUME, ORDER_ID_PATTERN, bad_request, ensure_only,
                                   int_value, is_digits, is_finite, number_value, required_value, shown)

CHINESE_TEXT = re.compile(r"[\u4e00-\u9fff]")


# ---- typed requests -------------------------------------------------------------------------------

@dataclass(frozen=True)
class BuyOrder:
    stock_code: str
    amount: Optional[float] = None
    volume: Optional[int] = None
    price: Optional[float] = None


@dataclass(frozen=True)
class PoolBuy:
    count: int
    amount: Optional[float] = None  # per stock; POSITION_UNIT when omitted


@dataclass(frozen=True)
class SellOrder:
    stock_code: str
    volume: Optional[int] = None
    ratio: Optional[float] = None
    price: Optional[float] = None
    confirmed: bool = False  # the operator confirmed it in a dialog (the only order an emergency stop lets through)


@dataclass(frozen=True)
class GridStart:
    stock_code: str
    options: dict  # optional GRID_* overrides for this session, already type-checked numbers



# ---- bodies ---------------------------------------------------------------------------------------

def parse_json_body(raw: bytes, content_type: str) -> dict:
    """The body as a JSON object; refuses other media types, bad UTF-8, NaN/Infinity and non-objects."""
    if (content_type or "").split(";")[0].strip().lower() != "application/json":
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", "请求体必须是 JSON（Content-Type: application/json）")
    if not raw:
        raise bad_request("请求体为空，应为 JSON 对象", "EMPTY_BODY")
    try:
        text = raw.decode("utf-8")
        body = json.loads(text, parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise bad_request("请求体不是有效的 UTF-8 文本", "INVALID_JSON") from None
    except ValueError as exc:
        raise bad_request(f"请求体不是有效的 JSON：{json_error_text(exc)}", "INVALID_JSON") from None
    except RecursionError:
        raise bad_request("请求体嵌套层数过多", "INVALID_JSON") from None
    if not isinstance(body, dict):
        raise bad_request("请求体必须是 JSON 对象（{…}）", "INVALID_JSON")
    if SURROGATE_ESCAPE.search(text):
        body = _without_lone_surrogates(body)
    return body


# a \uD800–\uDFFF escape: the only way a lone surrogate gets into a parsed body (raw ones are not UTF-8)
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _without_lone_surrogates(body: dict) -> dict:
    """The body with each lone surrogate (half of a UTF-16 pair, not a character) replaced by U+FFFD, so that
    no answer can quote one back (json.loads already joined the valid pairs into characters)."""
    dumped = json.dumps(body, ensure_ascii=False)
    return json.loads(LONE_SURROGATE.sub("\ufffd", dumped))


# json's messages (English) said in Chinese; the parser's position is added as line/column
JSON_MESSAGES = (
    ("Expecting property name enclosed in double quotes", "此处应为双引号括起的字段名"),
    ("Expecting ':' delimiter", "此处应为冒号 :"),
    ("Expecting ',' delimiter", "此处应为逗号 ,"),
    ("Expecting value", "此处应为一个值"),
    ("Unterminated string", "字符串没有结束（缺少右引号）"),
    ("Invalid control character", "字符串中有未转义的控制字符"),
    ("Invalid \\uXXXX escape", "无效的 \\u 转义"),
    ("Invalid \\escape", "无效的转义序列"),
    ("Extra data", "JSON 之后还有多余内容"),
    ("Illegal trailing comma", "多余的逗号"),
    ("Exceeds the limit", "整数位数过多"),
)


def json_error_text(exc: ValueError) -> str:
    """A Chinese explanation of a JSON syntax error, with its position."""
    message = getattr(exc, "msg", str(exc))
    text = next((chinese for english, chinese in JSON_MESSAGES if message.startswith(english)), None)
    if text is None:
        text = str(exc) if CHINESE_TEXT.search(str(exc)) else "格式错误"
    if isinstance(exc, json.JSONDecodeError):
        return f"第 {exc.lineno} 行第 {exc.colno} 列：{text}"
    return text


def parse_buy(body: Mapping[str, Any]) -> BuyOrder | PoolBuy:
    """`{stock_code, amount}` | `{stock_code, volume, price?}` | `{from_pool: true, count, amount?}`."""
    by_amount, by_volume, from_pool = BUY.variants
    if "from_pool" in body:
        ensure_only(body, from_pool.allowed)
        if body["from_pool"] is not True:
            raise bad_request("from_pool 只能为 true（从股票池随机买入）")
        count = BUY.field("count").read(body)
        amount = number_value(body, "amount", "每只买入金额", required=False, max_value=MAX_AMOUNT)
        return PoolBuy(count=count, amount=amount)
    ensure_only(body, by_amount.allowed | by_volume.allowed)
    code = parse_code(F_STOCK_CODE.read(body))
    has_amount, has_volume = "amount" in body, "volume" in body
    if has_amount == has_volume:
        raise bad_request("请提供买入金额 amount 或买入数量 volume（二选一）")
    if has_amount:
        if "price" in body:
            raise bad_request("按金额买入时不能指定价格；指定价格请按数量 volume 买入")
        return BuyOrder(code, amount=number_value(body, "amount", "买入金额", max_value=MAX_AMOUNT))
    volume = BUY.field("volume").read(body)
    if not market_rules.is_valid_buy_volume(code, volume):
        raise bad_request(_buy_lot_message(code, volume), "INVALID_LOT")
    return BuyOrder(code, volume=volume, price=_price(body, code))


def parse_sell(body: Mapping[str, Any]) -> SellOrder:
    """`{stock_code, volume, price?}` | `{stock_code, ratio}` (ratio of the available shares, 0 < r ≤ 1)."""
    ensure_only(body, set().union(*(v.allowed for v in SELL.variants)))
    code = parse_code(F_STOCK_CODE.read(body))
    confirmed = _confirm_flag(body)
    has_volume, has_ratio = "volume" in body, "ratio" in body
    if has_volume == has_ratio:
        raise bad_request("请提供卖出数量 volume 或卖出比例 ratio（二选一）")
    if has_ratio:
        if "price" in body:
            raise bad_request("按比例卖出时不能指定价格；指定价格请按数量 volume 卖出")
        return SellOrder(code, ratio=SELL.field("ratio").read(body), confirmed=confirmed)
    return SellOrder(code, volume=SELL.field("volume").read(body), price=_price(body, code), confirmed=confirmed)


def _confirm_flag(body: Mapping[str, Any]) -> bool:
    value = body.get("confirm")
    if value is None:  # left out (or null): not confirmed
        return False
    if not isinstance(value, bool):
        raise bad_request("confirm 只能是 true 或 false")
    return value


def parse_signal_id(body: Mapping[str, Any]) -> int:
    ensure_only(body, SIGNAL_ID.variants[0].allowed)
    return SIGNAL_ID.field("signal_id").read(body)


def parse_signal_filters(status: Optional[str], rule: Optional[str]) -> tuple[Optional[SignalStatus], Optional[Rule]]:
    """History filters `?status=` and `?rule=` (their English values); empty means no filter."""
    try:
        return (SignalStatus(status) if status else None), (Rule(rule) if rule else None)
    except ValueError:
        statuses = "、".join(s.value for s in SignalStatus)
        raise bad_request(f"筛选条件无效：status 可选 {statuses}；rule 可选 "
                          f"{'、'.join(r.value for r in Rule)}") from None


def parse_dismiss(body: Mapping[str, Any]) -> tuple[int, bool]:
    """`{signal_id, snooze?}`: snooze = do not raise the same signal again in this episode."""
    parsed = DISMISS.read(body)
    return parsed["signal_id"], parsed.get("snooze", False)


def parse_order_id(body: Mapping[str, Any]) -> str:
    ensure_only(body, ORDER_ID.variants[0].allowed)
    value = ORDER_ID.field("order_id").read(body)
    if not isinstance(value, str) or not ORDER_ID_PATTERN.match(value.strip()):
        raise bad_request("委托编号格式无效（1–64 位字母、数字或 _ - . :）")
    return value.strip()


def parse_config_changes(body: Mapping[str, Any]) -> dict:
    """`{"changes": {KEY: value}}`; key names are checked here, values by the ConfigStore."""
    ensure_only(body, CONFIG_CHANGES.variants[0].allowed)
    changes = CONFIG_CHANGES.field("changes").read(body)
    if not isinstance(changes, dict) or not changes:
        raise bad_request("changes 必须是非空对象，如 {\"STOP_LOSS_RATIO\": -0.08}")
    for key in changes:
        if not CONFIG_KEY_PATTERN.match(key):
            raise ApiError(400, "CONFIG_INVALID", f"参数名无效：{shown(key)}", {shown(key): "参数名无效"})
    return dict(changes)


def parse_rollback(body: Mapping[str, Any]) -> Optional[int]:
    """`{}` rolls back the latest change; `{"history_id": n}` a given one."""
    ensure_only(body, ROLLBACK.variants[0].allowed)
    return ROLLBACK.field("history_id").read(body, required=False)


def parse_config_key(body: Mapping[str, Any]) -> str:
    ensure_only(body, CONFIG_KEY.variants[0].allowed)
    key = CONFIG_KEY.field("key").read(body)
    if not isinstance(key, str) or not CONFIG_KEY_PATTERN.match(key):
        raise bad_request(f"参数名无效：{shown(key)}")
    return key


def parse_stock_pool(body: Mapping[str, Any]) -> list:
    """`{"stocks": [codes]}`; each code is validated by the StockPool (all errors reported at once)."""
    ensure_only(body, STOCK_POOL.variants[0].allowed)
    stocks = STOCK_POOL.field("stocks").read(body)
    if not isinstance(stocks, list):
        raise bad_request("stocks 必须是股票代码列表")
    return stocks


def parse_grid_start(body: Mapping[str, Any]) -> GridStart:
    """`{"stock_code", "center_price"?, …optional GRID_* numbers for this session}`; ranges are the grid
    manager's checks (the same as config.py's)."""
    variant = GRID_START.variants[0]
    ensure_only(body, variant.allowed)
    code = parse_code(F_STOCK_CODE.read(body))
    options = {}
    for key in sorted(variant.optional):
        if body.get(key) is not None:  # null: no override, as if left out
            value = body[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not is_finite(value):
                raise bad_request(f"{key} 必须是有限的数字")
            options[key] = value
    return GridStart(code, options)




def parse_reason(body: Mapping[str, Any], default: str) -> str:
    value = body.get("reason")
    if value is None:  # left out (or null): the default reason
        value = default
    if not isinstance(value, str) or not re.fullmatch(NON_BLANK_PATTERN, value):
        raise bad_request("原因（reason）须为非空文字", "INVALID_REASON")
    if len(value) > F_REASON.max_length:
        raise bad_request(f"原因（reason）不能超过 {F_REASON.max_length} 个字", "INVALID_REASON")
    return value.strip()


def parse_resume(body: Mapping[str, Any]) -> str:
    """{"confirm": true, "reason"?: "…"}; anything but an explicit true confirmation is refused."""
    ensure_only(body, RESUME.variants[0].allowed)
    if body.get("confirm") is not True:
        raise bad_request("恢复交易需要明确确认：请求体须包含 \"confirm\": true", "CONFIRMATION_REQUIRED")
    return parse_reason(body, "操作员确认恢复交易")


def parse_order_file_upload(files: Mapping[str, Any], form: Mapping[str, str]) -> tuple[str, bytes, bool]:
    """(file name, content, dry run) of a multipart upload; `files` maps part names to werkzeug FileStorage."""
    variant = ORDER_FILE_UPLOAD.variants[0]
    ensure_only({**dict.fromkeys(files), **dict.fromkeys(form)}, variant.allowed)
    upload = files.get("file")
    if upload is None and "file" not in form:
        raise bad_request("缺少上传的文件（表单字段 file）", "MISSING_FIELD")
    dry_text = form.get("dry_run", "false").strip().lower()
    if dry_text not in ORDER_FILE_UPLOAD.field("dry_run").enum:
        raise bad_request("dry_run 只能是 true 或 false")
    if upload is None:  # the part came without a file name (curl -F 'file=<orders.csv'): its text is the file
        return "upload.csv", form["file"].encode("utf-8"), dry_text in ("true", "1")
    return upload.filename or "upload.csv", upload.read(), dry_text in ("true", "1")


def parse_grid_session_id(text: str) -> int:
    return int_value({"id": _digits_or_text(text)}, "id", 1, MAX_ID, "网格会话编号")


# ---- path and query parameters --------------------------------------------------------------------

def parse_code(value: Any) -> str:
    """The normalized code (600036.SH) of a code written as STOCK_CODE_PATTERN allows; 400 otherwise."""
    if isinstance(value, str) and not re.fullmatch(STOCK_CODE_PATTERN, value):
        if value.strip() != value:
            raise bad_request(f"无效的股票代码「{shown(value)}」：前后不能有空白", "INVALID_STOCK_CODE")
        try:
            market_rules.normalize_code(value)  # its message names what is wrong (exchange, board, format)
        except ValueError as exc:
            raise bad_request(str(exc), "INVALID_STOCK_CODE") from None
        raise bad_request(f"无效的股票代码「{shown(value)}」", "INVALID_STOCK_CODE")
    try:
        return market_rules.normalize_code(value)
    except ValueError as exc:
        raise bad_request(str(exc), "INVALID_STOCK_CODE") from None


def parse_date(value: Optional[str], label: str) -> Optional[date]:
    if value is None or value == "":
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise bad_request(f"{label}格式无效：{shown(value)}，应为 YYYY-MM-DD", "INVALID_DATE") from None


def parse_date_range(start: Optional[str], end: Optional[str]) -> tuple[Optional[date], Optional[date]]:
    first, last = parse_date(start, "开始日期"), parse_date(end, "结束日期")
    if first and last and first > last:
        raise bad_request("开始日期不能晚于结束日期", "INVALID_DATE")
    return first, last


def parse_limit(value: Optional[str], default: int, label: str = "条数", maximum: int = MAX_LIST_LIMIT) -> int:
    if value is None or value == "":
        return default
    if not is_digits(value) or not 1 <= int(value) <= maximum:
        raise bad_request(f"{label}必须是 1 到 {maximum} 之间的整数")
    return int(value)


ACTIVE_ORDERS = "active"  # every state that is not final (a filter of the web layer)


def parse_order_status(value: Optional[str]) -> Optional[str]:
    """`active` (every not-final state) or one OrderStatus value."""
    if value is None or value == "":
        return None
    allowed = [ACTIVE_ORDERS] + [s.value for s in OrderStatus]
    if value not in allowed:
        raise bad_request(f"委托状态无效：{shown(value)}，可选 {', '.join(allowed)}")
    return value


# ---- helpers --------------------------------------------------------------------------------------

def _price(body: Mapping[str, Any], code: str) -> Optional[float]:
    price = number_value(body, "price", "委托价格", required=False, max_value=MAX_PRICE)
    if price is not None and market_rules.round_price(code, price) != price:
        raise bad_request(f"委托价格 {price:g} 不是最小价位 {market_rules.tick_size(code)} 元的整数倍", "INVALID_PRICE")
    return price


def _buy_lot_message(code: str, volume: int) -> str:
    return market_rules.buy_lot_message(code, volume)  # one wording per kind (issue 28: bonds, BSE)


def _digits_or_text(text: str) -> Any:
    return int(text) if is_digits(text) else text


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"不支持 {name}")
