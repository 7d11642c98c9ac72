"""GET /api/chores (issue 28 §3) through the real web server: a simulated account is told in Chinese that the chores
run only on a live account; the day's records show with their orders' state; the answers match the OpenAPI document."""
from __future__ import annotations

import jsonschema

from chores.composition import build_chores
from chores.jobs import SIMULATION_NOTE
from chores.store import REPO, SKIPPED, ChoreRecord
from web_test_support import Client, build_system, data_of, start_server


def conforming(client: Client, url: str) -> dict:
    schema = (client.get("/api/openapi.json").json["paths"]["/api/chores"]["get"]["responses"]["200"]["content"]
              ["application/json"]["schema"])
    reply = client.get(url)
    jsonschema.Draft202012Validator(schema).validate(reply.json)
    return data_of(reply)


def test_the_page_reads_the_chores_and_a_simulated_account_is_told_they_run_only_live(tmp_path):
    system = build_system(tmp_path)
    server = start_server(system)
    client = Client(server.port)
    try:
        assert conforming(client, "/api/chores") == {"available": False, "live": False,
                                                     "note": "本守护进程未启用申购与逆回购任务"}
        chores = build_chores(system.settings, system.dbs[1], system.clock, system.executor, system.broker,
                              system.events, system.signals, system.watch_store, live=False)
        system.ctx.chores = chores
        day = system.clock.today()
        chores.store.record(ChoreRecord(REPO, day, "", "", 0, 0.0, 0.0, SKIPPED, "可出借资金不足 1000 元"))
        view = conforming(client, "/api/chores")
        assert (view["available"], view["live"], view["note"]) == (True, False, SIMULATION_NOTE)
        assert (view["ipo_enabled"], view["repo_enabled"], view["ipo_time"], view["repo_time"]) == \
            (False, False, "10:00", "14:55")
        assert [(r["kind_label"], r["status_label"], r["reason"]) for r in view["repo"]] == [
            ("逆回购", "未出借", "可出借资金不足 1000 元")]
        assert view["summary"] == "逆回购未出借：可出借资金不足 1000 元"
        assert (view["subscriptions"], view["allotments"], view["payments_due"]) == ([], [], 0.0)
    finally:
        client.close()
        server.stop(2.0)
        system.close()
