"""Validation of API request bodies and query parameters: JSON in, typed requests out, or an ApiError with
the HTTP status, a machine code and a Chinese message. Pure functions; no component is touched here."""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import date
from typing import Any, Mapping, Optional

import config
import market_rules
from grid.rules import PARAM_KEYS as GRID_PARAM_KEYS
from core.models import OrderStatus, Rule, SignalStatus

# Sanity bounds on what one request may ask for; business limits (MAX_ORDER_VALUE, cash, lots against
# the position) are the executor's checks.
MAX_AMOUNT = 1e10
MAX_VOLUME = 10**9
MAX_PRICE = 100000.0
MAX_RANDOM_BUY_COUNT = 20
MAX_ID = 2**63 - 1
MAX_LIST_LIMIT = 5000
ORDER_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
CONFIG_KEY_PATTERN = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
CHINESE_TEXT = re.compile(r"[\u4e00-\u9fff]")
MAX_DIGITS = 19  # an id or a limit longer than this is out of range anyway (and int() refuses > 4,300 digits)


class ApiError(Exception):
    """An error answer: HTTP status, machine code, Chinese message, optional per-field errors."""

    def __init__(self, status: int, code: str, message: str, errors: Optional[Mapping[str, str]] = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = dict(errors or {})


def bad_request(message: str, code: str = "INVALID_REQUEST") -> ApiError:
    return ApiError(400, code, message)


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


# ---- declared shapes: each body field and query parameter is declared once; the declaration both
# validates (`read`) and describes itself (`schema`) for the OpenAPI document (web_openapi) ---------------

@dataclass(frozen=True)
class Field:
    """One JSON field or query parameter: its type, bounds and Chinese label."""

    name: str
    kind: str  # integer | number | string | boolean | object | array
    label: str
    low: Optional[float] = None  # integer: inclusive; number: exclusive (every amount here is > 0)
    high: Optional[float] = None  # inclusive
    pattern: str = ""
    enum: tuple = ()
    items: str = ""  # array item type
    const: Any = None
    fmt: str = ""  # OpenAPI format, e.g. date
    media: str = ""  # a file part of a multipart form: its media type
    max_length: Optional[int] = None
    min_length: Optional[int] = None
    item_enum: tuple = ()  # array: the values each item may take (documented; checked by the value's owner)
    item_pattern: str = ""  # array of strings: the pattern each item must match (checked by the value's owner)
    min_properties: Optional[int] = None  # object: at least this many keys
    key_enum: tuple = ()  # object: the keys it may have (documented; checked by the value's owner)

    def schema(self) -> dict:
        out: dict[str, Any] = {"type": self.kind, "description": self.label}
        if self.const is not None:
            out["const"] = self.const
        if self.enum:
            out["enum"] = list(self.enum)
        if self.pattern:
            out["pattern"] = self.pattern
        if self.fmt:
            out["format"] = self.fmt
        if self.media:
            out["contentMediaType"] = self.media
        if self.max_length is not None:
            out["maxLength"] = self.max_length
        if self.min_length is not None:
            out["minLength"] = self.min_length
        if self.items:
            out["items"] = {"type": self.items, **({"enum": list(self.item_enum)} if self.item_enum else {}),
                            **({"pattern": self.item_pattern} if self.item_pattern else {})}
        if self.min_properties is not None:
            out["minProperties"] = self.min_properties
        if self.key_enum:
            out["propertyNames"] = {"enum": list(self.key_enum)}
        if self.kind == "integer":
            out.update({k: v for k, v in (("minimum", self.low), ("maximum", self.high)) if v is not None})
        elif self.kind == "number":
            out.update({k: v for k, v in (("exclusiveMinimum", self.low), ("maximum", self.high)) if v is not None})
        return out

    def read(self, body: Mapping[str, Any], required: bool = True) -> Any:
        """The checked value (None when optional and absent); ApiError 400 otherwise."""
        if not required and (self.name not in body or body[self.name] is None):
            return None
        if self.kind == "integer":
            return _int(body, self.name, int(self.low), int(self.high), self.label)
        if self.kind == "number":
            return _number(body, self.name, self.label, max_value=self.high)
        return _required(body, self.name, self.label)

    def take(self, body: Mapping[str, Any], required: bool = True) -> Any:
        """Like `read`, and every kind is checked as declared (type, length, pattern, enum, array items)."""
        value = self.read(body, required)
        if value is None or self.kind in ("integer", "number"):
            return value
        where = f"{self.label}（{self.name}）"
        if self.kind == "boolean" and not isinstance(value, bool):
            raise bad_request(f"{where}只能是 true 或 false")
        if self.kind == "string":
            if not isinstance(value, str):
                raise bad_request(f"{where}必须是文本")
            if self.max_length is not None and len(value) > self.max_length:
                raise bad_request(f"{where}最多 {self.max_length} 个字符")
            if self.min_length is not None and len(value.strip()) < self.min_length:
                raise bad_request(f"{where}不能为空", "MISSING_FIELD")
            if (self.pattern and not re.fullmatch(self.pattern, value)) or (self.enum and value not in self.enum):
                raise bad_request(f"{where}无效：{_shown(value)}")
        if self.kind == "array":
            item_type = {"string": str, "integer": int, "number": (int, float), "boolean": bool}.get(self.items, object)
            if not isinstance(value, list) or not all(
                    isinstance(v, item_type) and not (isinstance(v, bool) and self.items != "boolean") for v in value):
                raise bad_request(f"{where}必须是列表，每项为 {self.items}")
        return value  # item_enum is the owner's check (its own error code), e.g. the notifier's event kinds

    def from_query(self, raw: Optional[str]) -> Optional[int]:
        """An integer query (or path) parameter: None when absent or empty; ASCII digits within the bounds."""
        if raw in (None, ""):
            return None
        low, high = int(self.low), int(self.high)
        if not (raw.isascii() and raw.isdigit()) or len(raw) > len(str(high)) or not low <= int(raw) <= high:
            raise bad_request(f"{self.label}（{self.name}）必须是 {low} 到 {high} 之间的整数", "INVALID_QUERY")
        return int(raw)


@dataclass(frozen=True)
class Variant:
    """One accepted combination of fields: these are required, those may be added, nothing else."""

    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    title: str = ""

    @property
    def allowed(self) -> set[str]:
        return set(self.required) | set(self.optional)


@dataclass(frozen=True)
class Shape:
    """A request body: its fields and the combinations accepted (one variant, or oneOf several)."""

    name: str
    description: str
    fields: tuple[Field, ...]
    variants: tuple[Variant, ...]
    form: bool = False  # a multipart form: a part has no null, an optional part is only left out

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)

    def read(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """A one-variant body checked against its declaration: {name: value} of the fields present."""
        (variant,) = self.variants
        _only(body, variant.allowed)
        values = {name: self.field(name).take(body, name in variant.required)
                  for name in (*variant.required, *variant.optional)}
        return {name: value for name, value in values.items() if value is not None}

    def schema(self) -> dict:
        by_name = {f.name: f for f in self.fields}

        def one(variant: Variant) -> dict:
            properties = {n: by_name[n].schema() for n in variant.required}
            properties.update({n: by_name[n].schema() if self.form else nullable(by_name[n].schema())
                               for n in variant.optional})
            out = {"type": "object", "properties": properties, "additionalProperties": False}
            if variant.required:
                out["required"] = list(variant.required)
            if variant.title:
                out["title"] = variant.title
            return out

        if len(self.variants) == 1:
            return {**one(self.variants[0]), "description": self.description}
        return {"oneOf": [one(v) for v in self.variants], "description": self.description}


def nullable(schema: dict) -> dict:
    """The schema of an optional field: the parsers read an explicit null as the field left out."""
    if "const" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    out = {**schema, "type": [schema["type"], "null"]}
    if "enum" in schema:
        out["enum"] = [*schema["enum"], None]
    return out


# Exactly the codes the API accepts (parse_code checks this pattern): six digits of a supported board, with the
# exchange they belong to written at most once, as a suffix (600036.SH) or a prefix (sh600036), any case. A code
# whose written exchange is not its own (600036.SZ) is refused: it would name another instrument.
_SH_DIGITS = r"(?:60[0135]|68[89]|5[168][0-9])[0-9]{3}"
_SZ_DIGITS = r"(?:00[0-3]|30[01]|1[56][0-9])[0-9]{3}"
_SH, _SZ = r"[Ss][Hh]", r"[Ss][Zz]"
STOCK_CODE_PATTERN = (rf"^(?:{_SH_DIGITS}(?:\.{_SH})?|{_SH}{_SH_DIGITS}|"
                      rf"{_SZ_DIGITS}(?:\.{_SZ})?|{_SZ}{_SZ_DIGITS})$")
NON_BLANK_PATTERN = r"^[\s\S]*\S[\s\S]*$"  # at least one character that is not white space
F_STOCK_CODE = Field("stock_code", "string", "股票代码，如 600036.SH 或 600036", pattern=STOCK_CODE_PATTERN)
F_AMOUNT = Field("amount", "number", "金额（元）", low=0, high=MAX_AMOUNT)
F_PRICE = Field("price", "number", "委托价格（元，限价；省略则按现价让价）", low=0, high=MAX_PRICE)

BUY = Shape("BuyRequest", "买入：按金额、按数量（可指定限价），或从股票池随机买入", (
    F_STOCK_CODE, F_AMOUNT, Field("volume", "integer", "买入数量", low=1, high=MAX_VOLUME), F_PRICE,
    Field("from_pool", "boolean", "从股票池随机买入", const=True),
    Field("count", "integer", "随机买入数量", low=1, high=MAX_RANDOM_BUY_COUNT)), (
    Variant(("stock_code", "amount"), title="按金额买入"),
    Variant(("stock_code", "volume"), ("price",), title="按数量买入"),
    Variant(("from_pool", "count"), ("amount",), title="从股票池随机买入")))
SELL = Shape("SellRequest", "卖出：按数量（可指定限价）或按可用持仓比例", (
    F_STOCK_CODE, Field("volume", "integer", "卖出数量", low=1, high=MAX_VOLUME),
    Field("ratio", "number", "卖出比例（可用持仓的比例，0 < 比例 ≤ 1）", low=0, high=1.0), F_PRICE,
    Field("confirm", "boolean", "操作员已确认（紧急停止状态下只接受 confirm 为 true 的手动卖出）")), (
    Variant(("stock_code", "volume"), ("price", "confirm"), title="按数量卖出"),
    Variant(("stock_code", "ratio"), ("confirm",), title="按比例卖出")))
# issue 26 item 12: a dry check of a manual order (the same checks as execute_buy / execute_sell, nothing sent)
CHECK_ORDER = Shape("CheckOrderRequest", "手动委托预检（不下单）：与 execute_buy / execute_sell 相同的全部下单前检查，"
                    "返回将委托的数量与价格、可买/可卖数量；只给代码时只返回可买/可卖", (
    Field("side", "string", "方向：buy 买入，sell 卖出", enum=("buy", "sell")), F_STOCK_CODE,
    Field("amount", "number", "买入金额", low=0, high=MAX_AMOUNT),
    Field("volume", "integer", "委托数量", low=1, high=MAX_VOLUME),
    Field("ratio", "number", "卖出比例（可用持仓的比例，0 < 比例 ≤ 1）", low=0, high=1.0), F_PRICE,
    Field("confirm", "boolean", "卖出：操作员已确认（同 execute_sell）")), (
    Variant(("side", "stock_code"), ("amount", "volume", "ratio", "price", "confirm")),))
SIGNAL_ID = Shape("SignalIdRequest", "执行一个排队中的信号", (
    Field("signal_id", "integer", "信号编号", low=1, high=MAX_ID),), (Variant(("signal_id",)),))
ORDER_ID = Shape("OrderIdRequest", "撤销一笔委托（本程序的委托编号或券商委托号）", (
    Field("order_id", "string", "委托编号", pattern=ORDER_ID_PATTERN.pattern),), (Variant(("order_id",)),))
CONFIG_CHANGES = Shape("ConfigChangesRequest", "修改参数：{\"changes\": {参数名: 新值}}", (
    Field("changes", "object", "参数修改，如 {\"STOP_LOSS_RATIO\": -0.08}；值的类型与范围见 GET /api/config",
          min_properties=1, key_enum=tuple(config.PARAMS_BY_KEY)),), (Variant(("changes",)),))


def config_value_schema(param: config.Param) -> dict:
    """The JSON values config.coerce_value accepts for `param` (type, bounds, choices); rules between parameters
    (config.validate) and a few per-parameter ones (e.g. the API token's length) are the ConfigStore's."""
    bounds = {k: v for k, v in (("minimum", param.min), ("maximum", param.max)) if v is not None}
    number = {"type": "number", **bounds}
    if param.kind == "bool":
        return {"type": "boolean"}
    if param.kind == "int":
        return {"type": "integer", **bounds}
    if param.kind == "float":
        return number
    if param.kind == "choice":
        return {"enum": list(param.choices)}
    if param.kind == "float_list":
        return {"type": "array", "minItems": 1, "items": number}
    if param.kind == "rate_table":  # rows of (threshold within the bounds, factor)
        return {"type": "array", "minItems": 1, "items": {"type": "array", "prefixItems": [
            number, {"type": "number"}], "minItems": 2, "maxItems": 2, "items": False}}
    if param.kind == "str_list":
        return {"type": "array", "items": {"type": "string"}}
    return {"type": "string"}


def config_changes_schema() -> dict:
    """The body of POST /api/config/update: each key of the parameter table with the values it takes."""
    changes = {**CONFIG_CHANGES.field("changes").schema(), "additionalProperties": False, "properties": {
        p.key: {**config_value_schema(p), "description": p.meaning} for p in config.PARAMS}}
    changes.pop("propertyNames", None)  # the properties list the keys
    return {**CONFIG_CHANGES.schema(), "properties": {"changes": changes}}


ROLLBACK = Shape("RollbackRequest", "回滚参数修改：省略 history_id 回滚最近一次", (
    Field("history_id", "integer", "修改记录编号", low=1, high=MAX_ID),), (Variant((), ("history_id",)),))
CONFIG_KEY = Shape("ConfigKeyRequest", "恢复一个参数为默认值", (
    Field("key", "string", "参数名 key", enum=tuple(config.PARAMS_BY_KEY)),), (Variant(("key",)),))
STOCK_POOL = Shape("StockPoolRequest", "替换股票池", (
    Field("stocks", "array", "股票列表 stocks", items="string", item_pattern=STOCK_CODE_PATTERN),), (
    Variant(("stocks",)),))
GRID_START = Shape("GridStartRequest", "为持仓股票启动网格；可为本会话覆盖 GRID_* 参数（范围同参数表）", (
    F_STOCK_CODE, Field("center_price", "number", "网格中心价（省略则用现价）"),
    *(Field(key, "number", f"本会话的 {key}") for key in sorted(GRID_PARAM_KEYS.values()))), (
    Variant(("stock_code",), ("center_price", *sorted(GRID_PARAM_KEYS.values()))),))
DISMISS = Shape("DismissSignalRequest", "忽略一个排队中的信号；snooze=true 时本轮持仓内不再提示同一信号", (
    SIGNAL_ID.field("signal_id"), Field("snooze", "boolean", "本轮持仓内不再提示（默认 false）")), (
    Variant(("signal_id",), ("snooze",)),))
EMPTY = Shape("EmptyRequest", "无参数：可不带请求体，或发送空对象 {}", (), (Variant(()),))

F_REASON = Field("reason", "string", "原因说明（最多 200 字，不能只有空白）", max_length=200, min_length=1,
                 pattern=NON_BLANK_PATTERN)
REASON = Shape("ReasonRequest", "可选的原因说明：不带请求体或 {} 时使用默认原因", (F_REASON,), (Variant((), ("reason",)),))
RESUME = Shape("ResumeRequest", "恢复交易：必须明确确认 {\"confirm\": true}", (
    Field("confirm", "boolean", "确认恢复交易", const=True), F_REASON), (Variant(("confirm",), ("reason",)),))

# issue 19: an order file uploaded as multipart/form-data
ORDER_FILE_UPLOAD = Shape("OrderFileUpload", "上传 CSV 委托文件（规则同委托文件目录）；dry_run=true 只校验不下单", (
    Field("file", "string", "CSV 文件（UTF-8 或 GBK；表头中英文均可）", media="text/csv"),
    Field("dry_run", "string", "只校验、不下单", enum=("true", "false", "1", "0"))), (
    Variant(("file",), ("dry_run",)),), form=True)

# Query parameters of the list routes (the routes refuse any other).
Q_STATUS = Field("status", "string", "委托状态：active（全部未完成）或一个状态值",
                 enum=("active", *(s.value for s in OrderStatus)))
Q_DATE = Field("date", "string", "日期 YYYY-MM-DD", fmt="date")
Q_START = Field("start", "string", "开始日期 YYYY-MM-DD", fmt="date")
Q_END = Field("end", "string", "结束日期 YYYY-MM-DD", fmt="date")
Q_STOCK_CODE = Field("stock_code", "string", "股票代码", pattern=STOCK_CODE_PATTERN)
Q_FORMAT = Field("format", "string", "输出格式：json 或 csv", enum=("json", "csv"))
Q_LIMIT = Field("limit", "integer", "最多返回条数", low=1, high=MAX_LIST_LIMIT)
ORDERS_QUERY = (Q_STATUS, Q_DATE)
TRADE_RECORDS_QUERY = (Q_START, Q_END, Q_STOCK_CODE, Q_FORMAT)
HISTORY_QUERY = (Q_START, Q_END)
LIMIT_QUERY = (Q_LIMIT,)
Q_SIGNAL_STATUS = Field("status", "string", "信号状态", enum=tuple(s.value for s in SignalStatus))
Q_RULE = Field("rule", "string", "规则", enum=tuple(r.value for r in Rule))
SIGNAL_HISTORY_QUERY = (Q_LIMIT, Q_SIGNAL_STATUS, Q_RULE, Q_STOCK_CODE)

# Path parameters by the name the routes give them.
PATH_PARAMS = {
    "code": Field("code", "string", "股票代码，如 600036.SH", pattern=STOCK_CODE_PATTERN),
    "session_id": Field("session_id", "integer", "网格会话编号", low=1, high=MAX_ID),
}


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
        _only(body, from_pool.allowed)
        if body["from_pool"] is not True:
            raise bad_request("from_pool 只能为 true（从股票池随机买入）")
        count = BUY.field("count").read(body)
        amount = _number(body, "amount", "每只买入金额", required=False, max_value=MAX_AMOUNT)
        return PoolBuy(count=count, amount=amount)
    _only(body, by_amount.allowed | by_volume.allowed)
    code = parse_code(F_STOCK_CODE.read(body))
    has_amount, has_volume = "amount" in body, "volume" in body
    if has_amount == has_volume:
        raise bad_request("请提供买入金额 amount 或买入数量 volume（二选一）")
    if has_amount:
        if "price" in body:
            raise bad_request("按金额买入时不能指定价格；指定价格请按数量 volume 买入")
        return BuyOrder(code, amount=_number(body, "amount", "买入金额", max_value=MAX_AMOUNT))
    volume = BUY.field("volume").read(body)
    if not market_rules.is_valid_buy_volume(code, volume):
        raise bad_request(_buy_lot_message(code, volume), "INVALID_LOT")
    return BuyOrder(code, volume=volume, price=_price(body, code))


def parse_sell(body: Mapping[str, Any]) -> SellOrder:
    """`{stock_code, volume, price?}` | `{stock_code, ratio}` (ratio of the available shares, 0 < r ≤ 1)."""
    _only(body, set().union(*(v.allowed for v in SELL.variants)))
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
    _only(body, SIGNAL_ID.variants[0].allowed)
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
    _only(body, ORDER_ID.variants[0].allowed)
    value = ORDER_ID.field("order_id").read(body)
    if not isinstance(value, str) or not ORDER_ID_PATTERN.match(value.strip()):
        raise bad_request("委托编号格式无效（1–64 位字母、数字或 _ - . :）")
    return value.strip()


def parse_config_changes(body: Mapping[str, Any]) -> dict:
    """`{"changes": {KEY: value}}`; key names are checked here, values by the ConfigStore."""
    _only(body, CONFIG_CHANGES.variants[0].allowed)
    changes = CONFIG_CHANGES.field("changes").read(body)
    if not isinstance(changes, dict) or not changes:
        raise bad_request("changes 必须是非空对象，如 {\"STOP_LOSS_RATIO\": -0.08}")
    for key in changes:
        if not CONFIG_KEY_PATTERN.match(key):
            raise ApiError(400, "CONFIG_INVALID", f"参数名无效：{_shown(key)}", {_shown(key): "参数名无效"})
    return dict(changes)


def parse_rollback(body: Mapping[str, Any]) -> Optional[int]:
    """`{}` rolls back the latest change; `{"history_id": n}` a given one."""
    _only(body, ROLLBACK.variants[0].allowed)
    return ROLLBACK.field("history_id").read(body, required=False)


def parse_config_key(body: Mapping[str, Any]) -> str:
    _only(body, CONFIG_KEY.variants[0].allowed)
    key = CONFIG_KEY.field("key").read(body)
    if not isinstance(key, str) or not CONFIG_KEY_PATTERN.match(key):
        raise bad_request(f"参数名无效：{_shown(key)}")
    return key


def parse_stock_pool(body: Mapping[str, Any]) -> list:
    """`{"stocks": [codes]}`; each code is validated by the StockPool (all errors reported at once)."""
    _only(body, STOCK_POOL.variants[0].allowed)
    stocks = STOCK_POOL.field("stocks").read(body)
    if not isinstance(stocks, list):
        raise bad_request("stocks 必须是股票代码列表")
    return stocks


def parse_grid_start(body: Mapping[str, Any]) -> GridStart:
    """`{"stock_code", "center_price"?, …optional GRID_* numbers for this session}`; ranges are the grid
    manager's checks (the same as config.py's)."""
    variant = GRID_START.variants[0]
    _only(body, variant.allowed)
    code = parse_code(F_STOCK_CODE.read(body))
    options = {}
    for key in sorted(variant.optional):
        if body.get(key) is not None:  # null: no override, as if left out
            value = body[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
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
    _only(body, RESUME.variants[0].allowed)
    if body.get("confirm") is not True:
        raise bad_request("恢复交易需要明确确认：请求体须包含 \"confirm\": true", "CONFIRMATION_REQUIRED")
    return parse_reason(body, "操作员确认恢复交易")


def parse_order_file_upload(files: Mapping[str, Any], form: Mapping[str, str]) -> tuple[str, bytes, bool]:
    """(file name, content, dry run) of a multipart upload; `files` maps part names to werkzeug FileStorage."""
    variant = ORDER_FILE_UPLOAD.variants[0]
    _only({**dict.fromkeys(files), **dict.fromkeys(form)}, variant.allowed)
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
    return _int({"id": _digits_or_text(text)}, "id", 1, MAX_ID, "网格会话编号")


# ---- path and query parameters --------------------------------------------------------------------

def parse_code(value: Any) -> str:
    """The normalized code (600036.SH) of a code written as STOCK_CODE_PATTERN allows; 400 otherwise."""
    if isinstance(value, str) and not re.fullmatch(STOCK_CODE_PATTERN, value):
        if value.strip() != value:
            raise bad_request(f"无效的股票代码「{_shown(value)}」：前后不能有空白", "INVALID_STOCK_CODE")
        try:
            market_rules.normalize_code(value)  # its message names what is wrong (exchange, board, format)
        except ValueError as exc:
            raise bad_request(str(exc), "INVALID_STOCK_CODE") from None
        raise bad_request(f"无效的股票代码「{_shown(value)}」", "INVALID_STOCK_CODE")
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
        raise bad_request(f"{label}格式无效：{_shown(value)}，应为 YYYY-MM-DD", "INVALID_DATE") from None


def parse_date_range(start: Optional[str], end: Optional[str]) -> tuple[Optional[date], Optional[date]]:
    first, last = parse_date(start, "开始日期"), parse_date(end, "结束日期")
    if first and last and first > last:
        raise bad_request("开始日期不能晚于结束日期", "INVALID_DATE")
    return first, last


def parse_limit(value: Optional[str], default: int, label: str = "条数", maximum: int = MAX_LIST_LIMIT) -> int:
    if value is None or value == "":
        return default
    if not _is_digits(value) or not 1 <= int(value) <= maximum:
        raise bad_request(f"{label}必须是 1 到 {maximum} 之间的整数")
    return int(value)


ACTIVE_ORDERS = "active"  # every state that is not final (a filter of the web layer)


def parse_order_status(value: Optional[str]) -> Optional[str]:
    """`active` (every not-final state) or one OrderStatus value."""
    if value is None or value == "":
        return None
    allowed = [ACTIVE_ORDERS] + [s.value for s in OrderStatus]
    if value not in allowed:
        raise bad_request(f"委托状态无效：{_shown(value)}，可选 {', '.join(allowed)}")
    return value


# ---- helpers --------------------------------------------------------------------------------------

def ensure_only(body: Mapping[str, Any], allowed: set[str]) -> None:
    _only(body, allowed)


def _only(body: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(str(k) for k in body if k not in allowed)
    if unknown:
        raise bad_request(f"未知字段：{', '.join(_shown(k) for k in unknown)}；允许的字段：{', '.join(sorted(allowed))}",
                          "UNKNOWN_FIELD")


def _required(body: Mapping[str, Any], key: str, label: str) -> Any:
    if key not in body or body[key] is None:
        raise bad_request(f"缺少{label}（{key}）", "MISSING_FIELD")
    return body[key]


def _int(body: Mapping[str, Any], key: str, low: int, high: int, label: str) -> int:
    value = _required(body, key, label)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and (
            not math.isfinite(value) or not value.is_integer())):
        raise bad_request(f"{label}（{key}）必须是整数")
    value = int(value)
    if not low <= value <= high:
        raise bad_request(f"{label}（{key}）必须在 {low} 到 {high} 之间，收到 {value}")
    return value


def _number(body: Mapping[str, Any], key: str, label: str, required: bool = True,
            max_value: float = MAX_AMOUNT) -> Optional[float]:
    if not required and (key not in body or body[key] is None):
        return None
    value = _required(body, key, label)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
        raise bad_request(f"{label}（{key}）必须是有限的数字")
    if not 0 < value <= max_value:
        raise bad_request(f"{label}（{key}）必须大于 0 且不超过 {max_value:g}，收到 {value:g}")
    return float(value)


def _price(body: Mapping[str, Any], code: str) -> Optional[float]:
    price = _number(body, "price", "委托价格", required=False, max_value=MAX_PRICE)
    if price is not None and market_rules.round_price(code, price) != price:
        raise bad_request(f"委托价格 {price:g} 不是最小价位 {market_rules.tick_size(code)} 元的整数倍", "INVALID_PRICE")
    return price


def _buy_lot_message(code: str, volume: int) -> str:
    if market_rules.board(code) is market_rules.Board.STAR:
        return f"科创板买入数量至少 200 股，收到 {volume} 股"
    return f"买入数量必须是 100 股的整数倍，收到 {volume} 股"


def _digits_or_text(text: str) -> Any:
    return int(text) if _is_digits(text) else text


def _is_digits(text: str) -> bool:
    """ASCII digits of a sane length: `²`.isdigit() is True but int() refuses it; 5,000 digits int() refuses."""
    return text.isascii() and text.isdigit() and len(text) <= MAX_DIGITS


def _finite(value: int | float) -> bool:
    """math.isfinite raises OverflowError for an int beyond float range: such an int is not a usable number."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"不支持 {name}")


def _shown(value: Any, limit: int = 40) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "…"
