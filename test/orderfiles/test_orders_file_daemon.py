"""Order files in the real daemon process: a 50-line file dropped into the watched inbox is being executed when
the daemon is killed with SIGKILL; after the restart the file resumes and every line reached the (simulated)
broker exactly once, the file ends in done/ with 50 results. Read from the daemon's SQLite files."""
import csv
import io
import json

from daemon_support import query, start_ready, wait_until

POOL = ["600036.SH", "000001.SZ", "601318.SH", "000858.SZ", "300750.SZ"]
SETS = {"DATA_SOURCE": "replay", "SIMULATION_BALANCE": 10_000_000.0, "MAX_ORDERS_PER_DAY": 1000,
        "MAX_ORDER_VALUE": 1_000_000.0, "ORDER_FILE_LINE_INTERVAL": 0.1, "ORDER_FILE_STABLE_SECONDS": 0.2,
        "ORDER_FILE_RESCAN_SECONDS": 1.0}
LINES = 50


def _file_text() -> str:
    rows = ["证券代码,方向,金额,备注"] + [f"{POOL[i % len(POOL)]},买,30000,ref-{i}" for i in range(LINES)]
    return "\n".join(rows) + "\n"


def _recorded(db) -> int:
    try:
        return query(db, "SELECT COUNT(*) FROM order_file_lines")[0][0]
    except Exception:  # the table is created at start; the file may be locked for a moment
        return 0


def test_sigkill_in_the_middle_of_a_file_sends_every_line_exactly_once(tmp_path):
    (tmp_path / "pool.json").write_text(json.dumps(POOL), encoding="utf-8")
    args = ["--stock-pool", str(tmp_path / "pool.json"), "--replay-speed", "30"]
    daemon = start_ready(tmp_path, args, SETS, name="first")
    db = tmp_path / "data" / "sim_trading.db"
    inbox = tmp_path / "data" / "orders" / "inbox"
    try:
        (inbox / "batch.csv").write_bytes(_file_text().encode("gbk"))
        wait_until(lambda: _recorded(db) >= 10, 60, "ten lines of the file executed", daemon)
        assert daemon.kill() == -9
    finally:
        daemon.stop_quietly()
    before = _recorded(db)
    assert 10 <= before < LINES  # killed in the middle
    assert (inbox / "batch.csv").exists()

    daemon = start_ready(tmp_path, args, SETS, name="second")
    try:
        wait_until(lambda: (inbox / "done" / "batch.result.csv").exists(), 60, "the file to finish", daemon)
    finally:
        code, _ = daemon.terminate()
    assert code == 0
    # every line: one order in our journal under its key, and that order reached the broker once
    per_key = query(db, "SELECT o.idempotency_key AS key, COUNT(s.client_id) AS sent FROM orders o "
                        "LEFT JOIN sim_orders s ON s.client_id = o.client_id WHERE o.rule = 'order_file' "
                        "GROUP BY o.idempotency_key")
    keys = {r["key"]: r["sent"] for r in per_key}
    assert len([k for k in keys if k]) == LINES
    assert all(sent == 1 for key, sent in keys.items() if key)
    released = [k for k in keys if not k]  # an order journaled but provably never sent before the kill
    assert sum(keys[k] for k in released) == 0
    lines = query(db, "SELECT line_no, status FROM order_file_lines ORDER BY line_no")
    assert [(r["line_no"], r["status"]) for r in lines] == [(n, "ok") for n in range(2, LINES + 2)]
    files = query(db, "SELECT status, lines, ok, failed FROM order_files")
    assert [tuple(r) for r in files] == [("done", LINES, LINES, 0)]
    result = list(csv.reader(io.StringIO((inbox / "done" / "batch.result.csv").read_text(encoding="utf-8-sig"))))
    assert len(result) == LINES + 1 and {r[4] for r in result[1:]} == {"已委托"}
    assert [r[3] for r in result[1:]] == [f"ref-{i}" for i in range(LINES)]
