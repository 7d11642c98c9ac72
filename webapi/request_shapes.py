"""The API's declared request shapes (split out of webapi/requests.py, issue 31): each body field, query
parameter and path parameter is declared once (`Field`, combined into `Shape`s of accepted `Variant`s); the
declaration both validates a request (`read`/`take`) and describes itself (`schema`) for the OpenAPI document
(webapi/openapi.py)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import config
from grid.rules import PARAM_KEYS as GRID_PARAM_KEYS
from core.models import OrderStatus, Rule, SignalStatus
from webapi.request_values import (MAX_AMOUNT, MAX_ID, MAX_LIST_LIMIT, MAX_PRICE, MAX_RANDOM_BUY_COUNT, MAX_VOLUME,
                                   ORDER_ID_PATTERN, bad_request, ensure_only, int_value, number_value,
                                   required_value, shown)


# ---- declared shapes: each body field and query parameter is declared once; the declaration both
# validates (`read`) and describes itself (`schema`) for the OpenAPI document (webapi/openapi.py) ----------

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
            return int_value(body, self.name, int(self.low), int(self.high), self.label)
        if self.kind == "number":
            return number_value(body, self.name, self.label, max_value=self.high)
        return required_value(body, self.name, self.label)

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
                raise bad_request(f"{where}无效：{shown(value)}")
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
        ensure_only(body, variant.allowed)
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
