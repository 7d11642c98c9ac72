"""Issue 26 item 8: on a replay folder, a watch task on a code the folder has no bars for could never fire (it
would only raise 行情停滞 later): creating it, or editing a task onto it, is refused at once with a Chinese 400."""
from __future__ import annotations

from datetime import date, timedelta

from web_test_support import Client, build_system, data_of as ok, error_message as error, start_server

HELD_CODE = "600036.SH"
MISSING = "000001.SZ"


def write_folder(folder) -> None:
    """70 weekdays of bars for one stock (2025-06-03 on: no exchange holiday among them)."""
    folder.mkdir()
    day, rows = date(2025, 6, 3), ["date,open,high,low,close,volume"]
    while len(rows) <= 70:
        if day.weekday() < 5:
            price = 10 + (len(rows) % 5) * 0.1
            rows.append(f"{day},{price:.2f},{price + 0.2:.2f},{price - 0.2:.2f},{price + 0.1:.2f},1000000")
        day += timedelta(days=1)
    (folder / f"{HELD_CODE}.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")


def test_task_on_a_code_missing_from_the_replay_data_is_refused(tmp_path):
    folder = tmp_path / "bars"
    write_folder(folder)
    system = build_system(tmp_path, {"REPLAY_DATA_DIR": str(folder)}, pool=[HELD_CODE])
    server = start_server(system)
    client = Client(server.port)
    try:
        missing = {"stock_code": MISSING, "conditions": [{"type": "price_above", "value": 1}]}
        message = error(client.post("/api/watch/tasks", missing), 400, "INVALID_WATCH_TASK")
        assert message == f"回放行情（bars）中没有 {MISSING} 的日线数据，无法提供它的行情，不能为它创建盯盘任务"
        task = ok(client.post("/api/watch/tasks", {**missing, "stock_code": HELD_CODE}), 201)
        error(client.request("PUT", f"/api/watch/tasks/{task['id']}", missing), 400, "INVALID_WATCH_TASK")
        assert [t["stock_code"] for t in ok(client.get("/api/watch/tasks"))["tasks"]] == [HELD_CODE]
    finally:
        client.close()
        server.stop()
        system.close()
