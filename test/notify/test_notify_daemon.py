"""`python main.py` as a real process with notifications and jobs: a channel from the config receives the
daemon's start on a loopback webhook, channels are managed through the API with their URLs masked (API,
config history, log), a test message reaches its channel, the jobs are listed and a triggered post-close
job writes a report that the API lists and serves; every answer of these routes matches its documented schema
and out-of-range input is a 4xx with a Chinese message."""
from __future__ import annotations

import json
import urllib.request

import jsonschema

from daemon_support import free_port, query, start_ready, wait_until
from notify_support import WebhookReceiver, announcements


def call(daemon, method: str, path: str, payload=None) -> tuple[int, dict, bytes]:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{daemon.port}{path}", data=data, method=method,
                                     headers={"X-API-Token": daemon.token(), "Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=15) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        raw, status = error.read(), error.code
    try:
        return status, json.loads(raw), raw
    except ValueError:
        return status, {}, raw


def test_daemon_notifies_and_runs_jobs_through_the_api(tmp_path):
    config_hook, web_hook = WebhookReceiver(), WebhookReceiver()
    pool = tmp_path / "pool.json"
    pool.write_text('["600036.SH"]', encoding="utf-8")
    daemon = start_ready(tmp_path, ["--stock-pool", str(pool), "--replay-speed", "2"],
                         {"DATA_SOURCE": "replay", "NOTIFY_URLS": [config_hook.url],
                          "NOTIFY_COALESCE_SECONDS": 0.0})  # the replay's first report must not come first
    try:
        bodies = config_hook.wait_for(1, 30)  # alone, or in the digest of the replay's first seconds
        assert any(label == "守护进程启动" and text.startswith("守护进程已启动") for label, text in announcements(bodies))

        status, reply, _ = call(daemon, "POST", "/api/notify/channels",
                                {"name": "网页渠道", "url": web_hook.url, "events": ["config_changed"]})
        assert status == 201, reply
        channel = reply["data"]["channel"]
        assert channel["url"] == "json://127.0.0.1/******" and channel["events"] == ["config_changed"]
        listing = call(daemon, "GET", "/api/notify/channels")[2].decode()
        port_text = web_hook.url.split(":")[2]
        assert port_text not in listing and config_hook.url.split(":")[2] not in listing
        assert call(daemon, "POST", "/api/notify/channels", {"url": "nonsense"})[0] == 400
        status, reply, _ = call(daemon, "POST", "/api/notify/channels", {"url": "json://127.0.0.1:9/x", "events": ["x"]})
        assert (status, reply["code"]) == (400, "INVALID_EVENT_KIND")
        status, reply, _ = call(daemon, "POST", "/api/notify/channels", {"url": web_hook.url})
        assert (status, reply["code"]) == (409, "DUPLICATE_CHANNEL")
        assert call(daemon, "POST", "/api/notify/channels", {"url": web_hook.url, "extra": 1})[1]["code"] == "UNKNOWN_FIELD"

        status, reply, _ = call(daemon, "POST", "/api/notify/test", {"channel_id": channel["id"]})
        assert status == 202
        assert web_hook.wait_for(1, 20)[0]["title"] == "miniQMT【测试消息】"
        status, _, _ = call(daemon, "POST", "/api/config/update", {"changes": {"SIGNAL_MAX_AGE": 90.0}})
        assert status == 200
        assert web_hook.wait_for(2, 20)[1]["message"].startswith("参数已修改：SIGNAL_MAX_AGE=90.0")
        wait_until(lambda: {m["status"] for m in daemon.api("/api/notify/messages")["messages"]
                            if m["channel_id"] == channel["id"]} == {"sent"}, 10, "both messages marked sent")
        assert call(daemon, "POST", "/api/notify/test", {"channel_id": 999})[0] == 404

        jobs = daemon.api("/api/jobs")["jobs"]
        assert [j["id"] for j in jobs] == ["pre_open", "post_close", "nightly", "ipo_subscribe", "repo"]  # + issue 28
        assert all(j["next_run"] for j in jobs)
        status, reply, _ = call(daemon, "POST", "/api/jobs/post_close/trigger")
        assert status == 200 and reply["data"]["run"]["status"] == "ok", reply
        reports = daemon.api("/api/reports")["reports"]
        assert len(reports) == 1
        status, _, raw = call(daemon, "GET", f"/api/reports/{reports[0]['day']}")
        assert status == 200 and b"data:image/png;base64," in raw
        assert call(daemon, "POST", "/api/jobs/nope/trigger")[0] == 404
        status, reply, _ = call(daemon, "POST", "/api/jobs/nightly/trigger")
        assert reply["data"]["run"]["status"] == "ok", reply
        assert (daemon.data_dir / "backups").is_dir()

        _answers_match_the_contract(daemon, channel["id"], reports[0]["day"])
        assert call(daemon, "DELETE", f"/api/notify/channels/{channel['id']}")[0] == 200
        assert call(daemon, "DELETE", f"/api/notify/channels/{channel['id']}")[0] == 404
        history = json.dumps(daemon.api("/api/config/history"), ensure_ascii=False)
        assert config_hook.url not in history
        wait_until(lambda: daemon.poll() is None, 1, "daemon alive")
    finally:
        daemon.stop_quietly()
        config_hook.close()
        web_hook.close()
    log_text = "".join(p.read_text(encoding="utf-8", errors="replace") for p in (tmp_path / "logs").glob("*.log*"))
    assert web_hook.url not in log_text and config_hook.url not in log_text


def _answers_match_the_contract(daemon, channel_id: int, day: str) -> None:
    paths = call(daemon, "GET", "/api/openapi.json")[1]["paths"]

    def conforms(method: str, path: str, url: str, payload=None, expected: int = 200) -> dict:
        status, reply, _ = call(daemon, method, url, payload)
        assert status == expected, (url, reply)
        schema = paths[path][method.lower()]["responses"][str(expected)]["content"]["application/json"]["schema"]
        jsonschema.Draft202012Validator(schema).validate(reply)
        return reply["data"]

    assert conforms("GET", "/api/notify/channels", "/api/notify/channels")["channels"][-1]["id"] == channel_id
    messages = conforms("GET", "/api/notify/messages", f"/api/notify/messages?channel_id={channel_id}&limit=1")
    assert len(messages["messages"]) == 1
    jobs = conforms("GET", "/api/jobs", "/api/jobs")["jobs"]  # (the replay goes on: a later day's run may be last)
    assert [job["id"] for job in jobs] == ["pre_open", "post_close", "nightly", "ipo_subscribe", "repo"]
    assert jobs[1]["last_run"] is not None
    assert conforms("GET", "/api/reports", "/api/reports")["reports"][0]["day"] == day
    run = conforms("POST", "/api/jobs/{job_id}/trigger", "/api/jobs/pre_open/trigger", {})["run"]
    assert (run["job_id"], run["trigger"]) == ("pre_open", "manual")
    assert conforms("POST", "/api/notify/test", "/api/notify/test", {"channel_id": channel_id}, 202)["message_id"] > 0
    channel_body = paths["/api/notify/channels"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert channel_body["required"] == ["url"] and channel_body["properties"]["name"]["maxLength"] == 40
    assert "fill" in channel_body["properties"]["events"]["items"]["enum"]
    # beyond the declared bounds: a 4xx naming the field in Chinese, never a SQLite overflow (a 500)
    for method, url, payload, status, code in [
            ("DELETE", f"/api/notify/channels/{2**63}", None, 404, "CHANNEL_NOT_FOUND"),
            ("GET", f"/api/notify/messages?channel_id={10**30}", None, 400, "INVALID_QUERY"),
            ("GET", "/api/notify/messages?limit=0", None, 400, "INVALID_QUERY"),
            ("GET", "/api/notify/messages?colour=red", None, 400, "UNKNOWN_FIELD"),
            ("POST", "/api/notify/test", {"channel_id": 2**63}, 400, "INVALID_REQUEST"),
            ("POST", "/api/notify/test", {"channel_id": "1"}, 400, "INVALID_REQUEST"),
            ("POST", "/api/notify/channels", {"url": "json://127.0.0.1:9/y", "events": "fill"}, 400,
             "INVALID_REQUEST"),
            ("POST", "/api/notify/channels", {"url": "json://127.0.0.1:9/y", "name": "名" * 41}, 400,
             "INVALID_REQUEST"),
            ("POST", "/api/notify/channels", {"url": " "}, 400, "MISSING_FIELD"),
            ("POST", "/api/jobs/Nope!/trigger", None, 400, "INVALID_REQUEST"),
            ("POST", "/api/jobs/post_close/trigger", {"force": True}, 400, "UNKNOWN_FIELD"),
            ("GET", "/api/reports/2026-13-01", None, 400, "INVALID_DATE"),
            ("GET", "/api/reports/2001-01-02", None, 404, "REPORT_NOT_FOUND")]:
        got, reply, _ = call(daemon, method, url, payload)
        assert (got, reply.get("code")) == (status, code), (method, url, reply)
        assert any("\u4e00" <= ch <= "\u9fff" for ch in reply["message"]), reply


# the row that carries run 1's start message: itself, or the burst's digest it was folded into
CARRIER = ("SELECT carrier.status, carrier.attempts FROM notify_outbox start JOIN notify_outbox carrier "
           "ON carrier.id = COALESCE(start.digest_id, start.id) WHERE start.kind='daemon_start'")


def test_message_pending_at_kill_9_of_the_daemon_is_sent_once_after_restart(tmp_path):
    """Run 1: the receiver is down, the start message is created and its first attempt fails; kill -9.
    Run 2 with the receiver up: run 1's message arrives exactly once (and run 2's own start message once)."""
    port = free_port()
    url = f"json://127.0.0.1:{port}/hook"
    pool = tmp_path / "pool.json"
    pool.write_text("[]", encoding="utf-8")
    sets = {"DATA_SOURCE": "replay", "NOTIFY_URLS": [url], "NOTIFY_RETRY_BASE_SECONDS": 0.5}
    first = start_ready(tmp_path, ["--stock-pool", str(pool)], sets)
    try:
        outbox = tmp_path / "data" / "notify.db"
        wait_until(lambda: query(outbox, CARRIER + " AND carrier.attempts >= 1"), 30, "the first attempt to fail", first)
        first.kill()
    finally:
        first.stop_quietly()
    assert [r["status"] for r in query(outbox, CARRIER)] == ["pending"]  # alone or within a pending digest
    receiver = WebhookReceiver(port=port)
    second = start_ready(tmp_path, ["--stock-pool", str(pool)], sets)
    try:
        wait_until(lambda: [label for label, _ in announcements(receiver.bodies)].count("守护进程启动") >= 2, 30,
                   "both start messages", second)
        wait_until(lambda: [r["status"] for r in query(outbox, CARRIER)] == ["sent", "sent"], 10,
                   "both start messages to be marked sent", second)
        code, _ = second.terminate(10)
        assert code == 0
    finally:
        second.stop_quietly()
        receiver.close()
    told = [label for label, _ in announcements(receiver.bodies)]
    assert [b["title"] for b in receiver.bodies].count("miniQMT【守护进程停止】") == 1  # an alarm: alone, while stopping
    assert told.count("守护进程启动") == 2  # run 1's (created before the kill) and run 2's, each once
    assert [r["status"] for r in query(outbox, CARRIER)] == ["sent", "sent"]
