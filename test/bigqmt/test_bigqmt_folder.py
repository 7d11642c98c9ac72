"""The folder transport (for big-QMT builds that cannot load the socket module): the same bridge file and broker
over append-only JSON-lines files — orders, fills, cancels, queries, the doctor's probe, and a strategy re-run
whose leftover files are never read again (no request runs twice)."""
from __future__ import annotations

import pytest

from bigqmt.probe import probe_bridge
from core.models import OrderStatus
from bigqmt_support import make_broker, req, start_host

O, F, CX = OrderStatus.OPEN, OrderStatus.FILLED, OrderStatus.CANCELLED


@pytest.fixture
def folder_host(tmp_path):
    started = start_host(folder=tmp_path / "bridge")
    yield started
    started.stop()


def test_orders_fills_cancels_and_queries_over_files(tmp_path, folder_host):
    broker, rec = make_broker(tmp_path, folder_host)
    broker.place_order(req("C1", volume=500))
    broker.place_order(req("C2", volume=300))
    rec.wait(lambda: rec.statuses("C1") == [O] and rec.statuses("C2") == [O])
    folder_host.fill(remark="C1")
    broker.cancel_order("C2")
    rec.wait(lambda: F in rec.statuses("C1") and CX in rec.statuses("C2") and len(rec.fills) == 1)
    assert [(o.client_id, o.status) for o in broker.query_orders()] == [("C1", F), ("C2", CX)]
    assert folder_host.passorder_calls == 2
    probe = probe_bridge("", 0, 2.0, folder=str(folder_host.folder))
    assert probe.version == "1" and probe.daemon_connected and broker.reconnects == 0


def test_a_strategy_re_run_never_reads_old_files_and_the_daemon_reconnects(tmp_path, folder_host):
    broker, rec = make_broker(tmp_path, folder_host)
    broker.place_order(req("C1"))
    rec.wait(lambda: rec.statuses("C1") == [O])
    folder_host.reinit()  # the new run ignores (and removes) every file already in the folder
    rec.wait(lambda: "QMT_RECONNECTED" in rec.anomalies)
    broker.place_order(req("C2"))
    rec.wait(lambda: rec.statuses("C2") == [O])
    assert folder_host.received == ["C1", "C2"]  # C1's request file was not executed again
