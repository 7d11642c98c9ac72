"""The bridge strategy file is what big QMT can run (Python 3.6 syntax, ASCII, standard library, no threads, the
entry points and callbacks QMT calls), and the pure row conversions read QMT's fields as documented."""
from __future__ import annotations

import ast
import sys
from datetime import datetime

import pytest

from bigqmt import rows
from bigqmt.timings import BRIDGE_FILE, bridge_version
from core.models import OrderStatus, Side

STDLIB_ALLOWED = {"json", "os", "socket", "sys", "time", "types"}


def tree() -> ast.Module:
    return ast.parse(BRIDGE_FILE.read_text(encoding="ascii"), feature_version=(3, 6))


def test_the_file_parses_as_python_3_6_and_is_ascii_with_a_gbk_coding_line():
    raw = BRIDGE_FILE.read_bytes()
    assert all(byte < 128 for byte in raw)  # QMT saves strategies as GBK: non-ASCII UTF-8 would not load
    assert raw.splitlines()[0] == b"#coding:gbk"
    tree()  # raises SyntaxError on walrus, positional-only parameters, match ...


def test_the_file_imports_only_the_standard_library_and_starts_no_thread():
    imported = set()
    for node in ast.walk(tree()):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported == STDLIB_ALLOWED
    assert all(name in sys.stdlib_module_names for name in imported)
    source = BRIDGE_FILE.read_text(encoding="ascii")
    for feature in ("threading", "dataclasses", "from __future__", "asyncio", ":="):
        assert feature not in source


def test_the_file_defines_what_qmt_calls_with_qmt_signatures():
    functions = {node.name: [a.arg for a in node.args.args] for node in tree().body if isinstance(node, ast.FunctionDef)}
    assert functions["init"] == ["C"] and functions["handlebar"] == ["C"] and functions["stop"] == ["C"]
    assert functions["order_callback"] == ["C", "orderInfo"]
    assert functions["deal_callback"] == ["C", "dealInfo"]
    assert functions["orderError_callback"] == ["C", "orderArgs", "errMsg"]
    assert functions["bridge_pump"] == ["C"]  # the run_time timer, passed by name


def test_the_daemon_reads_the_version_of_the_file_it_ships():
    assert bridge_version() == "1"


@pytest.mark.parametrize("code, status", [(48, OrderStatus.SUBMITTED), (49, OrderStatus.SUBMITTED), (50, OrderStatus.OPEN),
                                          (51, OrderStatus.CANCEL_PENDING), (52, OrderStatus.CANCEL_PENDING),
                                          (53, OrderStatus.CANCELLED), (54, OrderStatus.CANCELLED),
                                          (55, OrderStatus.PARTIALLY_FILLED), (56, OrderStatus.FILLED),
                                          (57, OrderStatus.REJECTED), (255, OrderStatus.UNKNOWN), (None, OrderStatus.UNKNOWN)])
def test_every_qmt_status_maps_to_ours(code, status):
    assert rows.status_of({"m_nOrderStatus": code}) is status


def test_side_comes_from_the_offset_flag_then_the_op_type():
    assert rows.side_of({"m_nOffsetFlag": 48, "m_nOpType": 24}) is Side.BUY  # m_nOffsetFlag wins
    assert rows.side_of({"m_nOffsetFlag": 49}) is Side.SELL
    assert rows.side_of({"m_nOffsetFlag": None, "m_nOpType": 24}) is Side.SELL
    assert rows.side_of({"m_nOffsetFlag": 50, "m_nOpType": 27}) is None  # credit and others: not ours


def test_codes_remarks_reasons_commission_and_times():
    assert rows.stock_code({"m_strInstrumentID": "600036", "m_strExchangeID": "SH"}) == "600036.SH"
    assert rows.stock_code({"m_strInstrumentID": "000001", "m_strExchangeID": "SZSE"}) == "000001.SZ"
    assert rows.remark_of({"m_strRemark": "", "m_strSource": "C9"}) == "C9"
    assert rows.remark_of_error({"strategyName": "C9_&&&_C9"}) == "C9"
    assert rows.rejection_reason({"m_strCancelInfo": "[COUNTER][260200][可用资金不足]", "m_nErrorID": 2147483647}) == \
        "[COUNTER][260200][可用资金不足]"
    assert rows.rejection_reason({"m_strErrorMsg": "价格超出涨跌停", "m_nErrorID": -61}) == "价格超出涨跌停（错误码 -61）"
    assert rows.commission_of({"m_dCommission": 0.0, "m_dComssion": 5.12}) == 5.12
    fallback = datetime(2026, 12, 8, 10, 0)
    assert rows.broker_time("20261208", "093001", lambda: fallback) == datetime(2026, 12, 8, 9, 30, 1)
    assert rows.broker_time("20261208", "09:30:01", lambda: fallback) == datetime(2026, 12, 8, 9, 30, 1)
    assert rows.broker_time("", None, lambda: fallback) == fallback
