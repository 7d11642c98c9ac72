"""Order files from other systems: bytes → text (UTF-8 with or without BOM, or GBK as Chinese Excel saves),
CSV → one checked instruction or one Chinese error per line, and the result CSV written back. Pure functions;
ordering and file handling are orderfiles.intake's."""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Optional, Union

import market_rules
from core.models import Side

# Header names accepted for each column (compared after strip + lower case).
HEADER_ALIASES = {
    "stock_code": ("stock_code", "code", "证券代码", "代码", "股票代码"),
    "side": ("side", "方向", "买卖", "买卖方向"),
    "volume": ("volume", "数量", "股数", "委托数量"),
    "amount": ("amount", "金额", "委托金额"),
    "ratio": ("ratio", "比例", "卖出比例"),
    "price": ("price", "价格", "委托价格", "限价"),
    "client_ref": ("client_ref", "备注", "参考号", "客户参考"),
}
SIDE_WORDS = {"买": Side.BUY, "买入": Side.BUY, "buy": Side.BUY, "b": Side.BUY,
              "卖": Side.SELL, "卖出": Side.SELL, "sell": Side.SELL, "s": Side.SELL}
MAX_CLIENT_REF = 64
RESULT_COLUMNS = ("line", "stock_code", "side", "client_ref", "status", "order_id", "reason")
STATUS_LABELS = {"ok": "已委托", "valid": "校验通过", "failed": "失败"}
SIDE_LABELS = {Side.BUY.value: "买入", Side.SELL.value: "卖出"}


class OrderFileError(ValueError):
    """The whole file cannot be read (encoding, no header, no code/side/quantity column)."""


@dataclass(frozen=True)
class OrderLine:
    """One instruction; exactly one of volume / amount / ratio is set."""

    line_no: int  # the line in the file (the header is line 1)
    stock_code: str
    side: Side
    volume: Optional[int] = None
    amount: Optional[float] = None
    ratio: Optional[float] = None
    price: Optional[float] = None
    client_ref: str = ""


@dataclass(frozen=True)
class LineError:
    line_no: int
    reason: str
    stock_code: str = ""
    side: str = ""
    client_ref: str = ""


ParsedLine = Union[OrderLine, LineError]


def decode(raw: bytes) -> str:
    """UTF-8 (a BOM is dropped) or else GBK (GB18030, its superset); OrderFileError when neither fits."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("gb18030")
    except UnicodeDecodeError:
        raise OrderFileError("文件编码无法识别：请保存为 UTF-8 或 GBK（Excel「CSV」格式）") from None


def parse(raw: bytes) -> list[ParsedLine]:
    """Every data line of the file, in order; blank lines are skipped."""
    rows = list(csv.reader(io.StringIO(decode(raw))))
    header_at = next((i for i, row in enumerate(rows) if any(cell.strip() for cell in row)), None)
    if header_at is None:
        raise OrderFileError("文件为空")
    columns = _columns(rows[header_at])
    out: list[ParsedLine] = []
    for index in range(header_at + 1, len(rows)):
        row = rows[index]
        if not any(cell.strip() for cell in row):
            continue
        values = {name: (row[i].strip() if i < len(row) else "") for name, i in columns.items()}
        out.append(parse_line(index + 1, values))
    return out


def parse_line(line_no: int, values: dict[str, str]) -> ParsedLine:
    code_text, side_text = values.get("stock_code", ""), values.get("side", "")
    ref = values.get("client_ref", "")

    def error(reason: str) -> LineError:
        known = SIDE_WORDS.get(side_text.lower())  # shown as 买入/卖出 like the good lines
        return LineError(line_no, reason, code_text, known.value if known else side_text, ref[:MAX_CLIENT_REF])

    if len(ref) > MAX_CLIENT_REF:
        return error(f"备注过长（最多 {MAX_CLIENT_REF} 个字符）")
    try:
        code = normalize_file_code(code_text)
    except ValueError as exc:
        return error(str(exc) if code_text else "缺少证券代码")
    side = SIDE_WORDS.get(side_text.lower())
    if side is None:
        return error(f"买卖方向无效：「{side_text}」，应为 买/卖/buy/sell")
    given = [name for name in ("volume", "amount", "ratio") if values.get(name, "")]
    if len(given) != 1:
        return error("数量、金额、比例必须且只能填写一项")
    try:
        price = _positive(values.get("price", ""), "价格") if values.get("price", "") else None
        quantity = _positive(values[given[0]], {"volume": "数量", "amount": "金额", "ratio": "比例"}[given[0]])
    except ValueError as exc:
        return error(str(exc))
    if price is not None and market_rules.round_price(code, price) != price:
        return error(f"价格 {price:g} 不是最小价位 {market_rules.tick_size(code)} 元的整数倍")
    if given[0] == "volume":
        if not quantity.is_integer():
            return error(f"数量必须是整数股，收到 {quantity:g}")
        volume = int(quantity)
        if side is Side.BUY and not market_rules.is_valid_buy_volume(code, volume):
            return error(f"买入数量 {volume} 股不符合 {code} 的交易单位")
        return OrderLine(line_no, code, side, volume=volume, price=price, client_ref=ref)
    if price is not None:
        return error("按金额或比例下单时不能指定价格")
    if given[0] == "amount":
        if side is Side.SELL:
            return error("金额只能用于买入；卖出请填写数量或比例")
        return OrderLine(line_no, code, side, amount=quantity, client_ref=ref)
    if side is Side.BUY:
        return error("比例只能用于卖出（可用持仓的比例）；买入请填写数量或金额")
    if quantity > 1:
        return error(f"卖出比例必须在 0 到 1 之间，收到 {quantity:g}")
    return OrderLine(line_no, code, side, ratio=quantity, client_ref=ref)


def normalize_file_code(text: str) -> str:
    """As `market_rules.normalize_code`, and a code Excel stripped of its leading zeros (`1`, `2594`) padded
    back to six digits when the padded code belongs to exactly one exchange and board (only `000`–`003`, all
    Shenzhen main board, can start with zeros); otherwise a Chinese error asking for the full code."""
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit() and len(digits) < 6):
        return market_rules.normalize_code(text)
    padded = digits.zfill(6)
    try:
        return market_rules.normalize_code(padded)
    except ValueError:
        raise ValueError(f"证券代码「{digits}」不足 6 位（可能被 Excel 去掉了开头的 0），补足为 {padded} 后不对应唯一的"
                         f"交易所和板块；请填写完整代码，如 000001 或 000001.SZ") from None


def result_csv(rows: list[dict]) -> bytes:
    """The result file beside the processed one: UTF-8 with BOM so that Excel opens the Chinese text."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["行号", "证券代码", "方向", "备注", "状态", "委托编号", "原因"])
    for row in rows:
        shown = {**row, "status": STATUS_LABELS.get(row["status"], row["status"]),
                 "side": SIDE_LABELS.get(row.get("side", ""), row.get("side", ""))}
        writer.writerow([shown.get(c, "") for c in RESULT_COLUMNS])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def _columns(header: list[str]) -> dict[str, int]:
    by_alias = {alias: name for name, aliases in HEADER_ALIASES.items() for alias in aliases}
    columns: dict[str, int] = {}
    for index, cell in enumerate(header):
        name = by_alias.get(cell.strip().lower())
        if name and name not in columns:
            columns[name] = index
    missing = [label for name, label in (("stock_code", "证券代码"), ("side", "方向")) if name not in columns]
    if missing or not {"volume", "amount", "ratio"} & set(columns):
        raise OrderFileError("表头缺少必需的列：需要 证券代码(stock_code)、方向(side)，以及 数量(volume)/金额(amount)/"
                             "比例(ratio) 之一；收到表头：" + "、".join(c.strip() for c in header)[:200])
    return columns


def _positive(text: str, label: str) -> float:
    try:
        value = float(text.replace(",", ""))
    except ValueError:
        raise ValueError(f"{label}不是数字：「{text[:20]}」") from None
    if not math.isfinite(value) or value <= 0 or value > 1e10:
        raise ValueError(f"{label}必须大于 0，收到「{text[:20]}」")
    return value
