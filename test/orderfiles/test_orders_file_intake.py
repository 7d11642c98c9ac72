"""Order-file intake on the real components (synthetic replay, SimTrader, TradingExecutor on SQLite files):
GBK and UTF-8-BOM files with Chinese headers are executed, a bad line is reported while the good ones execute,
a half-written file is not read, a file is processed once, a resumed file sends no line twice, dry-run orders
nothing. Each file ends in done/ or error/ with a result CSV beside it."""
import csv
import io

import pytest

import orderfiles.parse as parse
from core.models import Rule, Side
from orderfiles.intake import OrderFileIntake, line_key
from orderfiles.store import OrderFileStore
from web_test_support import build_system


@pytest.fixture
def system(tmp_path):
    built = build_system(tmp_path, overrides={"MAX_ORDERS_PER_DAY": 500})
    built.settings.update({"ORDER_FILE_STABLE_SECONDS": 2.0}, source="test")  # a web-level value tests may change
    yield built
    built.close()


class FakeNow:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def intake(system, tmp_path):
    now = FakeNow()
    built = OrderFileIntake(OrderFileStore(system.dbs[1], system.clock), system.executor, system.positions,
                            system.settings, tmp_path / "inbox", now=now)
    built.fake_now = now
    return built


def _drop(intake, name: str, text: str, encoding: str) -> None:
    intake.inbox.mkdir(parents=True, exist_ok=True)
    (intake.inbox / name).write_bytes(text.encode(encoding))


def _scan_when_stable(intake):
    first = intake.scan()  # first sight: size noted, not read
    assert first == []
    intake.fake_now.t += 2.0
    return intake.scan()


def _orders(system):
    return system.dbs[1].query("SELECT stock_code, side, volume, rule, idempotency_key, status FROM orders ORDER BY seq")


def _result(path):
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # Excel opens UTF-8 with BOM
    return list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))


def test_gbk_file_with_chinese_headers_is_executed(system, intake):
    _drop(intake, "指令.csv", "证券代码,方向,数量,价格,备注\n600036.SH,买,200,,甲-1\n000001,买入,300,,甲-2\n", "gbk")
    [record] = _scan_when_stable(intake)
    assert (record.status, record.lines, record.ok, record.failed) == ("done", 2, 2, 0)
    rows = _orders(system)
    assert [(r["stock_code"], r["side"], r["volume"], r["rule"]) for r in rows] == [
        ("600036.SH", "buy", 200, Rule.ORDER_FILE.value), ("000001.SZ", "buy", 300, Rule.ORDER_FILE.value)]
    assert [r["idempotency_key"] for r in rows] == [line_key(record, 2), line_key(record, 3)]
    assert not (intake.inbox / "指令.csv").exists()
    assert (intake.inbox / "done" / "指令.csv").exists()
    result = _result(intake.inbox / "done" / "指令.result.csv")
    assert result[0] == ["行号", "证券代码", "方向", "备注", "状态", "委托编号", "原因"]
    assert [(r[0], r[1], r[3], r[4]) for r in result[1:]] == [("2", "600036.SH", "甲-1", "已委托"),
                                                             ("3", "000001.SZ", "甲-2", "已委托")]
    assert all(r[5] for r in result[1:])  # order ids


def test_utf8_bom_file_with_chinese_headers_buys_by_amount_and_sells_by_ratio(system, intake):
    system.executor.buy_stock("600519.SH", volume=300)
    system.next_day()  # T+1: yesterday's shares can be sold
    _drop(intake, "bom.csv", "\ufeff代码,买卖,金额,比例,备注\n300750,buy,50000,,x\n600519.SH,卖,,0.5,y\n", "utf-8")
    [record] = _scan_when_stable(intake)
    assert (record.status, record.ok) == ("done", 2)
    rows = [r for r in _orders(system) if r["rule"] == Rule.ORDER_FILE.value]
    assert [(r["stock_code"], r["side"]) for r in rows] == [("300750.SZ", "buy"), ("600519.SH", "sell")]
    assert rows[1]["volume"] == 100  # half of 300 available, rounded down to the 100-share lot
    assert rows[0]["volume"] % 100 == 0 and rows[0]["volume"] > 0


def test_a_bad_line_is_reported_and_the_good_lines_execute(system, intake):
    text = ("stock_code,side,volume,price,client_ref\n600036.SH,buy,100,,a\n999999.SH,buy,100,,b\n"
            "000001.SZ,hold,100,,c\n600519.SH,buy,150,,d\n000001.SZ,buy,100,,e\n")
    _drop(intake, "mixed.csv", text, "utf-8")
    [record] = _scan_when_stable(intake)
    assert (record.status, record.lines, record.ok, record.failed) == ("error", 5, 2, 3)
    assert [(r["stock_code"], r["volume"]) for r in _orders(system)] == [("600036.SH", 100), ("000001.SZ", 100)]
    result = _result(intake.inbox / "error" / "mixed.result.csv")
    statuses = [(r[0], r[4]) for r in result[1:]]
    assert statuses == [("2", "已委托"), ("3", "失败"), ("4", "失败"), ("5", "失败"), ("6", "已委托")]
    reasons = {r[0]: r[6] for r in result[1:]}
    assert "不支持的股票代码" in reasons["3"]
    assert "买卖方向无效" in reasons["4"]
    assert "交易单位" in reasons["5"]


def test_a_line_refused_by_the_executor_is_reported_with_its_reason(system, intake):
    system.settings.update({"MAX_ORDER_VALUE": 1000.0}, source="test")
    _drop(intake, "big.csv", "证券代码,方向,数量\n600519.SH,买,100\n", "utf-8")
    [record] = _scan_when_stable(intake)
    assert record.status == "error"
    [line] = intake.recent()[0]["results"]
    assert line["status"] == "failed" and "超过上限" in line["reason"]


def test_a_half_written_file_is_not_read(system, intake):
    _drop(intake, "slow.csv", "证券代码,方向,数量\n600036.SH,买,100\n000001.SZ,", "utf-8")
    assert intake.scan() == []
    intake.fake_now.t += 1.0
    with open(intake.inbox / "slow.csv", "ab") as handle:  # the writer goes on
        handle.write("买,100\n600519.SH,买,100\n".encode("utf-8"))
    assert intake.scan() == []  # size changed: watched again from now
    intake.fake_now.t += 1.9
    assert intake.scan() == []  # not yet stable for 2 s
    assert _orders(system) == []
    intake.fake_now.t += 0.2
    [record] = intake.scan()
    assert (record.lines, record.ok) == (3, 3)
    assert [r["stock_code"] for r in _orders(system)] == ["600036.SH", "000001.SZ", "600519.SH"]


def test_the_same_content_is_processed_once(system, intake):
    text = "证券代码,方向,数量\n600036.SH,买,100\n"
    _drop(intake, "a.csv", text, "utf-8")
    _scan_when_stable(intake)
    _drop(intake, "a-again.csv", text, "utf-8")
    _scan_when_stable(intake)
    assert len(_orders(system)) == 1
    result = _result(intake.inbox / "error" / "a-again.result.csv")
    assert "重复文件" in result[1][6]


def test_a_resumed_file_sends_no_line_twice(system, intake):
    """As after a crash: the file is journaled and line 2's order was sent, but its result not recorded."""
    text = "证券代码,方向,数量\n600036.SH,买,100\n000001.SZ,买,100\n600519.SH,买,100\n"
    raw = text.encode("utf-8")
    _drop(intake, "resume.csv", text, "utf-8")
    import hashlib

    file_hash = hashlib.sha256(raw).hexdigest()
    store = OrderFileStore(system.dbs[1], system.clock)
    record, created = store.begin(file_hash, "resume.csv", "folder", system.clock.today().isoformat())
    assert created
    system.executor.buy_stock("600036.SH", volume=100, rule=Rule.ORDER_FILE, idempotency_key=line_key(record, 2))
    [finished] = _scan_when_stable(intake)
    assert finished.id == record.id and (finished.ok, finished.lines) == (3, 3)
    keys = [r["idempotency_key"] for r in _orders(system)]
    assert keys == [line_key(record, n) for n in (2, 3, 4)]
    # the executor itself refuses to send a key twice: it answers with the journaled order
    again = system.executor.buy_stock("600036.SH", volume=100, rule=Rule.ORDER_FILE,
                                      idempotency_key=line_key(record, 2))
    assert len(_orders(system)) == 3 and again.client_id == system.dbs[1].query(
        "SELECT client_id FROM orders ORDER BY seq")[0][0]


def test_dry_run_validates_and_orders_nothing(system, intake):
    system.settings.update({"ORDER_FILE_DRY_RUN": True}, source="test")
    _drop(intake, "check.csv", "证券代码,方向,数量\n600036.SH,买,100\n600036.SH,买,50\n", "gbk")
    [record] = _scan_when_stable(intake)
    assert record.dry_run and (record.ok, record.failed) == (1, 1)
    assert _orders(system) == []
    result = _result(intake.inbox / "error" / "check.result.csv")
    assert [r[4] for r in result[1:]] == ["校验通过", "失败"]


def test_an_unreadable_file_goes_to_error_with_the_reason(system, intake):
    _drop(intake, "nohead.csv", "foo,bar\n1,2\n", "utf-8")
    [record] = _scan_when_stable(intake)
    assert record.status == "error" and "表头缺少必需的列" in record.message
    assert "表头缺少必需的列" in _result(intake.inbox / "error" / "nohead.result.csv")[1][6]


@pytest.mark.parametrize("values, reason", [
    ({"stock_code": "600036", "side": "买", "volume": "100", "amount": "5000"}, "只能填写一项"),
    ({"stock_code": "600036", "side": "卖", "amount": "5000"}, "金额只能用于买入"),
    ({"stock_code": "600036", "side": "买", "ratio": "0.5"}, "比例只能用于卖出"),
    ({"stock_code": "600036", "side": "卖", "ratio": "1.5"}, "0 到 1"),
    ({"stock_code": "600036", "side": "买", "volume": "100", "price": "10.001"}, "最小价位"),
    ({"stock_code": "600036", "side": "买", "volume": "1e400"}, "必须大于 0"),
    ({"stock_code": "600036", "side": "买", "volume": "-5"}, "必须大于 0"),
    ({"stock_code": "688981", "side": "买", "volume": "150"}, "交易单位"),
])
def test_line_rules(values, reason):
    parsed = parse.parse_line(2, values)
    assert isinstance(parsed, parse.LineError) and reason in parsed.reason, parsed


def test_line_parsing_accepts_the_documented_forms():
    assert parse.parse_line(5, {"stock_code": "sh600036", "side": "SELL", "volume": "1,000", "price": "12.34"}) == \
        parse.OrderLine(5, "600036.SH", Side.SELL, volume=1000, price=12.34)
    assert parse.parse_line(6, {"stock_code": "688981", "side": "买", "volume": "201"}).volume == 201


def test_a_paused_or_halted_account_keeps_the_file_waiting_until_trading_resumes(system, intake):
    system.trading_state.pause("测试暂停", "test")
    _drop(intake, "later.csv", "证券代码,方向,数量\n600036.SH,买,100\n000001.SZ,买,100\n", "utf-8")
    assert _scan_when_stable(intake) == []
    assert (intake.inbox / "later.csv").exists() and _orders(system) == []
    [waiting] = intake.recent()
    assert waiting["status"] == "processing" and waiting["message"].startswith("等待恢复交易：自动交易已暂停")
    system.trading_state.halt("测试紧急停止", "test")
    intake.fake_now.t += system.settings.get("ORDER_FILE_WAIT_RECHECK_SECONDS")
    assert intake.scan() == [] and _orders(system) == []
    assert intake.recent()[0]["message"].startswith("等待恢复交易：已紧急停止")
    system.trading_state.resume("测试恢复", "test")
    intake.fake_now.t += system.settings.get("ORDER_FILE_WAIT_RECHECK_SECONDS")
    [record] = intake.scan()
    assert (record.status, record.ok, record.message) == ("done", 2, "")
    assert [r["rule"] for r in _orders(system)] == ["order_file", "order_file"]


def test_the_worker_wakes_on_a_file_event_long_before_the_rescan(system, tmp_path):
    import threading
    import time

    from orderfiles.worker import OrderFileWorker

    system.settings.update({"ORDER_FILE_RESCAN_SECONDS": 600.0, "ORDER_FILE_STABLE_SECONDS": 0.3}, source="test")
    intake = OrderFileIntake(OrderFileStore(system.dbs[1], system.clock), system.executor, system.positions,
                             system.settings, tmp_path / "watched")
    worker = OrderFileWorker(intake, system.settings)
    stop = threading.Event()
    try:
        worker.run_once()  # starts the observer; the inbox is empty
        woke = threading.Event()
        waiter = threading.Thread(target=lambda: (worker.wait(stop, 60.0), woke.set()))
        started = time.monotonic()
        waiter.start()
        (intake.inbox / "w.csv").write_bytes("证券代码,方向,数量\n600036.SH,买,100\n".encode("utf-8"))
        assert woke.wait(10.0), "no wake-up from the file event"
        assert time.monotonic() - started < 10.0
        worker.run_once()  # first sight: not stable yet
        assert intake.waiting()
        before = time.monotonic()
        worker.wait(stop, 60.0)  # while a file waits to settle, the worker looks again within the stable time
        assert time.monotonic() - before < 2.0
        deadline = time.monotonic() + 10.0
        while (intake.inbox / "w.csv").exists() and time.monotonic() < deadline:
            worker.run_once()
            worker.wait(stop, 60.0)
        assert (intake.inbox / "done" / "w.csv").exists()
    finally:
        stop.set()
        worker.on_stop()


def test_an_order_journaled_but_never_sent_frees_its_key_at_recovery(system):
    """Killed between journal and broker: recovery marks it rejected (never re-sent by the journal) and frees
    its idempotency key, so the order file's resume sends that line once."""
    key = "F" + "ab" * 10 + "D20261207L2"
    request = system.executor.journal.open_order("600036.SH", Side.BUY, 100, 10.0, Rule.ORDER_FILE, None,
                                                 idempotency_key=key)
    assert system.executor.order_for_idempotency_key(key).client_id == request.client_id
    system.executor.recover()
    entry = system.executor.journal.get(request.client_id)
    assert entry.status.value == "rejected" and "未发出" in entry.reason
    assert system.executor.order_for_idempotency_key(key) is None
    order = system.executor.buy_stock("600036.SH", volume=100, rule=Rule.ORDER_FILE, idempotency_key=key)
    assert order.client_id != request.client_id
    assert system.executor.order_for_idempotency_key(key).client_id == order.client_id


# ---- issue 26 item 2, issue 25 item 8(c)

def test_a_basket_re_exported_daily_with_the_same_content_is_ordered_again_the_next_trading_day(system, intake):
    text = "证券代码,方向,数量\n600036.SH,买,100\n"
    _drop(intake, "basket.csv", text, "utf-8")
    [first] = _scan_when_stable(intake)
    _drop(intake, "basket.csv", text, "utf-8")  # the same day: refused
    assert _scan_when_stable(intake)[0].id == first.id
    assert "重复文件" in _result(intake.inbox / "error" / "basket.result.csv")[1][6]
    system.next_day()
    _drop(intake, "basket.csv", text, "utf-8")  # the next trading day: a new order
    [second] = _scan_when_stable(intake)
    assert second.id != first.id and (second.status, second.ok) == ("done", 1)
    assert second.trading_day == system.clock.today().isoformat() != first.trading_day
    keys = [r["idempotency_key"] for r in _orders(system)]
    assert keys == [line_key(first, 2), line_key(second, 2)] and keys[0] != keys[1]


def test_codes_excel_stripped_of_leading_zeros_are_padded_when_unambiguous(system, intake):
    _drop(intake, "excel.csv", "证券代码,方向,数量\n1,买,100\n2594,买,100\n12345,买,100\n", "gbk")
    _scan_when_stable(intake)
    assert [(r["stock_code"], r["volume"]) for r in _orders(system)] == [("000001.SZ", 100)]
    results = intake.recent()[0]["results"]
    assert [r["stock_code"] for r in results] == ["000001.SZ", "002594.SZ", "12345"]
    assert "002594.SZ" in results[1]["reason"]  # padded, then refused by the executor (no replay quote)
    assert "补足为 012345" in results[2]["reason"] and "请填写完整代码" in results[2]["reason"]


@pytest.fixture
def small_budget(tmp_path):
    built = build_system(tmp_path, overrides={"MAX_ORDERS_PER_DAY": 2})
    now = FakeNow()
    intake = OrderFileIntake(OrderFileStore(built.dbs[1], built.clock), built.executor, built.positions,
                             built.settings, tmp_path / "inbox", now=now)
    intake.fake_now = now
    yield built, intake
    built.close()


def test_a_file_waiting_for_its_budget_is_neither_re_parsed_nor_logged_again(small_budget, monkeypatch, caplog):
    system, intake = small_budget
    parsed = []
    real_parse = parse.parse
    monkeypatch.setattr(parse, "parse", lambda raw: parsed.append(1) or real_parse(raw))
    lines = "".join(f"{code},买,100\n" for code in ("600036.SH", "000001.SZ", "600519.SH", "300750.SZ"))
    _drop(intake, "budget.csv", "证券代码,方向,数量\n" + lines, "utf-8")
    assert _scan_when_stable(intake) == []
    assert len(_orders(system)) == 2
    [waiting] = intake.recent()
    assert waiting["status"] == "processing" and waiting["message"].startswith("等待")
    for _ in range(50):  # file events and rescans while it waits: nothing is re-read or re-tried
        assert intake.scan() == []
    recheck = system.settings.get("ORDER_FILE_WAIT_RECHECK_SECONDS")
    assert intake.due_in() == recheck
    intake.fake_now.t += recheck  # one re-check: refused again, not logged again
    assert intake.scan() == []
    assert parsed == [1]
    notes = [r for r in caplog.records if "budget.csv 暂停处理" in r.getMessage()]
    assert len(notes) == 1 and len(_orders(system)) == 2
    system.next_day()  # a new day's budget (and a person resumes if the breaker paused the account)
    if system.trading_state.state.value != "running":
        system.trading_state.resume("测试恢复", "test")
    intake.fake_now.t += recheck
    [record] = intake.scan()
    assert (record.status, record.ok, record.message) == ("done", 4, "")
    assert parsed == [1] and len(_orders(system)) == 4


def test_a_long_file_is_worked_in_bounded_steps_so_the_thread_keeps_beating(system, tmp_path):
    import time

    from qmt.broker_guard import broker_step_seconds
    from orderfiles.worker import OrderFileWorker

    system.settings.update({"ORDER_FILE_STEP_SECONDS": 0.15, "ORDER_FILE_LINE_INTERVAL": 0.02,
                            "ORDER_FILE_MAX_LINES_PER_MINUTE": 1000, "MAX_ACTIONS_PER_MINUTE": 1000,
                            "MAX_ACTIONS_PER_STOCK_PER_MINUTE": 1000, "MAX_ORDERS_PER_STOCK_PER_DAY": 1000},
                           source="test")
    now = FakeNow()
    intake = OrderFileIntake(OrderFileStore(system.dbs[1], system.clock), system.executor, system.positions,
                             system.settings, tmp_path / "steps", now=now)
    worker = OrderFileWorker(intake, system.settings)
    assert worker.max_step_seconds == 0.15 + broker_step_seconds(system.settings)
    rows = "".join(f"{('600036.SH', '000001.SZ', '600519.SH')[i % 3]},买,100\n" for i in range(30))
    intake.upload("long.csv", ("证券代码,方向,数量\n" + rows).encode("utf-8"), dry_run=False)
    steps = []
    while (intake.inbox / "long.csv").exists() and len(steps) < 100:
        assert intake.due_in() == 0.0  # work is due: the worker does not sleep between steps
        started = time.monotonic()
        worker.run_once()
        steps.append(time.monotonic() - started)
    assert (intake.inbox / "done" / "long.csv").exists() and len(_orders(system)) == 30
    assert len(steps) >= 3  # 30 lines × ≥ 0.02 s do not fit one 0.15 s step
    assert max(steps) < 0.15 + 1.0  # one step and one line at most, never the whole file


def test_the_file_is_paced_below_the_per_minute_breakers(system, intake):
    codes = ("600036.SH", "000001.SZ", "600519.SH", "300750.SZ")
    rows = "".join(f"{codes[i % 4]},买,100\n" for i in range(25))  # more than MAX_ACTIONS_PER_MINUTE (20)
    _drop(intake, "paced.csv", "证券代码,方向,数量\n" + rows, "utf-8")
    assert _scan_when_stable(intake) == []
    assert len(_orders(system)) == system.settings.get("ORDER_FILE_MAX_LINES_PER_MINUTE") == 10
    assert intake.scan() == [] and len(_orders(system)) == 10  # the same minute: paced, not refused
    finished = []
    for _ in range(10):
        system.step()  # the market clock moves on (more than a minute per replay step)
        intake.fake_now.t += 1.0
        finished += intake.scan()
        if finished:
            break
    [record] = finished
    assert (record.status, record.ok) == ("done", 25)
    assert system.trading_state.state.value == "running"  # no breaker tripped


def test_a_file_left_in_the_inbox_from_an_earlier_day_resumes_under_its_own_keys(system, intake):
    """Waited (or crashed) over the night: the same file resumes its record and keys, no line is sent again."""
    import hashlib

    text = "证券代码,方向,数量\n600036.SH,买,100\n000001.SZ,买,100\n"
    store = OrderFileStore(system.dbs[1], system.clock)
    record, _ = store.begin(hashlib.sha256(text.encode("utf-8")).hexdigest(), "left.csv", "folder", "2000-01-03")
    system.executor.buy_stock("600036.SH", volume=100, rule=Rule.ORDER_FILE, idempotency_key=line_key(record, 2))
    _drop(intake, "left.csv", text, "utf-8")
    [finished] = _scan_when_stable(intake)
    assert (finished.id, finished.ok, finished.trading_day) == (record.id, 2, "2000-01-03")
    assert [r["idempotency_key"] for r in _orders(system)] == [line_key(record, 2), line_key(record, 3)]
