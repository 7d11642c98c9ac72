"""The ground every API request check stands on (split out of webapi/requests.py, issue 31): the error answer
(`ApiError`: HTTP status, machine code, Chinese message), the sanity bounds on what one request may ask for, and the
checks of one value (present, integer, finite number, only the allowed fields). Pure functions."""
from __future__ import annotations

import math
import re
from typing import Any, Mapping, Optional

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


def ensure_only(body: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(str(k) for k in body if k not in allowed)
    if unknown:
        raise bad_request(f"未知字段：{', '.join(shown(k) for k in unknown)}；允许的字段：{', '.join(sorted(allowed))}",
                          "UNKNOWN_FIELD")


def required_value(body: Mapping[str, Any], key: str, label: str) -> Any:
    if key not in body or body[key] is None:
        raise bad_request(f"缺少{label}（{key}）", "MISSING_FIELD")
    return body[key]


def int_value(body: Mapping[str, Any], key: str, low: int, high: int, label: str) -> int:
    value = required_value(body, key, label)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and (
            not math.isfinite(value) or not value.is_integer())):
        raise bad_request(f"{label}（{key}）必须是整数")
    value = int(value)
    if not low <= value <= high:
        raise bad_request(f"{label}（{key}）必须在 {low} 到 {high} 之间，收到 {value}")
    return value


def number_value(body: Mapping[str, Any], key: str, label: str, required: bool = True,
                 max_value: float = MAX_AMOUNT) -> Optional[float]:
    if not required and (key not in body or body[key] is None):
        return None
    value = required_value(body, key, label)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not is_finite(value):
        raise bad_request(f"{label}（{key}）必须是有限的数字")
    if not 0 < value <= max_value:
        raise bad_request(f"{label}（{key}）必须大于 0 且不超过 {max_value:g}，收到 {value:g}")
    return float(value)


def is_digits(text: str) -> bool:
    """ASCII digits of a sane length: `²`.isdigit() is True but int() refuses it; 5,000 digits int() refuses."""
    return text.isascii() and text.isdigit() and len(text) <= MAX_DIGITS


def is_finite(value: int | float) -> bool:
    """math.isfinite raises OverflowError for an int beyond float range: such an int is not a usable number."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def shown(value: Any, limit: int = 40) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "…"
