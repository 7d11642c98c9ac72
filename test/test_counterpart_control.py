"""The run-time control of the miniQMT counterpart (test/stand_ins/live_account.py, issue 25 §3): the lines appended
to COUNTERPART_CONTROL are applied once each, in order, a half-written line waits for its end, unknown or invalid
commands are logged and skipped, each fault reaches the counter; COUNTERPART_START shifts the market clock."""
from __future__ import annotations

import json
from datetime import datetime

import pytest

from stand_ins import live_account, xtquant_datacenter
from stand_ins.fake_xtpythonclient import ORDER_JUNK, ORDER_REPORTED, FakeQmt, NativeObject


class Client:
    """A stand-in client as xttrader would hold it, recording what the counter delivers."""

    def __init__(self):
        self.alive, self.subscribed, self.session = True, True, 1
        self.delivered: list[tuple[str, tuple]] = []

    def deliver(self, bind_name: str, *args) -> None:
        self.delivered.append((bind_name, args))


def order_request(code: str, volume: int, price: float, sell: bool = True) -> NativeObject:
    return NativeObject(m_strAccountID="8800123456", m_nAccountType=2, m_strStockCode=code,
                        m_nOrderType=24 if sell else 23, m_nOrderVolume=volume, m_nPriceType=11, m_dPrice=price,
                        m_strOrderRemark=f"R{code}{volume}", m_strStrategyName="t")


@pytest.fixture
def rig(tmp_path):
    clock = live_account.MarketTime("2026-12-08T10:00:00+08:00", wall=lambda: 1_800_000_000.0)
    counterpart = FakeQmt(cash=100000.0, now=lambda: int(clock.feed_timestamp()))
    service = xtquant_datacenter.MiniQmtService()
    ticker = live_account.Ticker(service, clock)
    logged: list[str] = []
    control = live_account.CounterpartControl(tmp_path / "control.jsonl", counterpart, service, ticker, clock,
                                              logged.append)
    client = Client()
    counterpart.clients.append(client)
    yield control, counterpart, service, clock, logged, client
    service.stop()
    counterpart.close()


def append(control, text: str) -> None:
    with open(control.path, "a", encoding="utf-8") as handle:
        handle.write(text)


def test_lines_are_applied_once_in_order_and_a_partial_line_waits(rig):
    control, counterpart, service, clock, logged, _ = rig
    assert control.poll() == 0  # no file yet
    append(control, '{"cmd":"price","code":"600000.SH","price":12.5}\n{"cmd":"hold","code":"600000.SH",')
    assert control.poll() == 1
    assert service.ticks["600000.SH"]["lastPrice"] == 12.5
    assert "600000.SH" not in counterpart.positions  # the half-written line waits
    append(control, '"volume":1000,"cost":14.0}\n{"cmd":"price","code":"600000.SH","price":12.4}\n')
    assert control.poll() == 2 and control.poll() == 0  # each line once
    position = counterpart.positions["600000.SH"]
    # carried from an earlier day, marked at the latest quoted price
    assert (position.volume, position.can_use_volume, position.open_price, position.last_price) == (1000, 1000,
                                                                                                     14.0, 12.4)
    assert service.ticks["600000.SH"]["lastPrice"] == 12.4
    assert [line.split("命令 ")[-1] for line in logged] == [
        '{"cmd":"price","code":"600000.SH","price":12.5}',
        '{"cmd":"hold","code":"600000.SH","volume":1000,"cost":14.0}',
        '{"cmd":"price","code":"600000.SH","price":12.4}']


def test_unknown_and_invalid_commands_are_logged_and_skipped(rig):
    control, counterpart, _, _, logged, _ = rig
    append(control, '{"cmd":"explode"}\nnot json\n{"cmd":"price","code":"999999.SH","price":1}\n'
                    '{"cmd":"reject_orders","side":"both"}\n{"cmd":"refuse_cancels","message":"不撤"}\n')
    assert control.poll() == 5
    assert logged[0] == '模拟 miniQMT：未知的控制命令，已忽略：{"cmd":"explode"}'
    assert [line.startswith("模拟 miniQMT：控制命令无法执行") for line in logged[1:4]] == [True, True, True]
    assert counterpart.rejected_sides == {} and counterpart.cancel_refusal == "不撤"


def test_faults_reach_the_counter_and_clear_turns_them_off(rig):
    control, counterpart, _, clock, _, client = rig
    append(control, json.dumps({"cmd": "hold", "code": "600036.SH", "volume": 500, "cost": 40.0}) + "\n"
           + json.dumps({"cmd": "reject_orders", "side": "sell", "message": "柜台拒绝：暂停卖出"}) + "\n"
           + json.dumps({"cmd": "skew_clock", "seconds": -120}) + "\n")
    control.poll()
    counterpart.request(client, "orderStockWithSeq", 1, order_request("600036.SH", 500, 39.5))
    [refused] = counterpart.orders.values()
    assert (refused.status, refused.status_msg) == (ORDER_JUNK, "柜台拒绝：暂停卖出")
    assert refused.order_time == int(clock.timestamp()) - 120  # the counter's clock is skewed
    counterpart.request(client, "orderStockWithSeq", 2, order_request("600036.SH", 100, 39.5, sell=False))
    assert counterpart.orders[1002].status == ORDER_REPORTED  # buys pass

    append(control, '{"cmd":"drop_pushes","seconds":60}\n')
    control.poll()
    pushed = len(client.delivered)
    counterpart.fill(1002, 100)
    assert len(client.delivered) == pushed  # trade, order, position and asset pushes lost

    append(control, '{"cmd":"clear"}\n')
    control.poll()
    assert (counterpart.rejected_sides, counterpart.pushes_dropped_until, clock.skew) == ({}, 0.0, 0.0)
    counterpart.request(client, "orderStockWithSeq", 3, order_request("600036.SH", 500, 39.5))
    assert counterpart.orders[1003].status == ORDER_REPORTED


def test_dump_writes_the_counters_book_and_when_each_price_was_set(rig, tmp_path):
    control, _, _, _, _, _ = rig
    target = tmp_path / "book.json"
    append(control, '{"cmd":"hold","code":"601988.SH","volume":300,"cost":5.3}\n{"cmd":"price","code":"601988.SH",'
                    f'"price":4.75}}\n{{"cmd":"dump","path":"{target}"}}\n')
    control.poll()
    book = json.loads(target.read_text(encoding="utf-8"))
    assert book["positions"] == {"601988.SH": {"volume": 300, "can_use_volume": 300, "open_price": 5.3}}
    assert (book["cash"], book["orders"], book["sent_remarks"]) == (100000.0, [], [])
    assert set(book["priced_at"]) == {"601988.SH"}


def test_market_time_starts_at_counterpart_start_and_runs_in_real_time():
    wall = [1_800_000_000.0]
    clock = live_account.MarketTime("2026-12-08T10:00:00+08:00", wall=lambda: wall[0])
    assert clock.now().replace(tzinfo=None) == datetime(2026, 12, 8, 10, 0, 0)
    wall[0] += 90.5
    assert clock.now().replace(tzinfo=None) == datetime(2026, 12, 8, 10, 1, 30, 500000)
    clock.skew = -120
    assert clock.feed_timestamp() == clock.timestamp() - 120
    assert live_account.MarketTime(None, wall=lambda: 5.0).timestamp() == 5.0
