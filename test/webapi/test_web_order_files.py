"""POST/GET /api/order-files and GET /api/diagnostics over the real waitress server: multipart upload queued,
executed and listed, dry run, the same content refused the second time (409), a wrong media type (415), a
missing file part or an unknown field (400), a path in the file name stripped, the switch off (409), and the
doctor's checks. While a file is being executed (its broker call held), a dry-run upload and a real upload are
both answered at once, and the dry run never reaches the inbox nor orders anything (issue 26 item 1)."""
import threading
import time
import uuid

import pytest

from doctor.cli import daemon_diagnostics
from orderfiles.intake import OrderFileIntake
from orderfiles.store import OrderFileStore
from web_test_support import Client, build_system, start_server


@pytest.fixture
def served(tmp_path):
    system = build_system(tmp_path)
    system.ctx.order_files = OrderFileIntake(OrderFileStore(system.dbs[1], system.clock), system.executor,
                                             system.positions, system.settings, tmp_path / "inbox")
    system.ctx.diagnostics = daemon_diagnostics(system.settings, tmp_path / "data", tmp_path / "logs", system.broker,
                                                system.data.hub, system.clock)
    server = start_server(system)
    client = Client(server.port)
    yield system, client, tmp_path / "inbox"
    client.close()
    server.stop()
    system.close()


def multipart(parts: dict) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    chunks = []
    for name, value in parts.items():
        if isinstance(value, tuple):
            filename, content = value
            head = f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\nContent-Type: text/csv'
        else:
            head, content = f'Content-Disposition: form-data; name="{name}"', value.encode("utf-8")
        chunks.append(f"--{boundary}\r\n{head}\r\n\r\n".encode("utf-8") + content + b"\r\n")
    return b"".join(chunks) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def upload(client, parts):
    raw, content_type = multipart(parts)
    return client.post("/api/order-files", raw=raw, content_type=content_type)


def test_upload_executes_lists_and_refuses_the_same_content_again(served):
    system, client, inbox = served
    content = "证券代码,方向,数量,备注\n600036.SH,买,100,r1\n".encode("gbk")
    reply = upload(client, {"file": ("../../etc/指令.csv", content)})
    assert reply.status == 200, reply.text
    data = reply.json["data"]
    assert (data["name"], data["status"], data["ok"], data["source"], data["results"]) == (
        "指令.csv", "processing", 0, "upload", [])  # queued: the worker thread executes it
    [done] = system.ctx.order_files.scan()  # what the worker does next
    assert (done.id, done.status, done.ok) == (data["id"], "done", 1)
    assert system.ctx.order_files.results(done.id)[0]["order_id"].startswith("SIM")
    assert (inbox / "done" / "指令.csv").read_bytes() == content  # the path in the name was dropped
    listed = client.get("/api/order-files").json["data"]
    assert [f["name"] for f in listed] == ["指令.csv"] and listed[0]["results"][0]["client_ref"] == "r1"
    again = upload(client, {"file": ("another-name.csv", content)})
    assert again.status == 409 and again.json["code"] == "DUPLICATE_FILE" and "重复文件" in again.json["message"]
    assert len(system.dbs[1].query("SELECT 1 FROM orders")) == 1


def test_dry_run_upload_orders_nothing(served):
    system, client, _ = served
    reply = upload(client, {"file": ("c.csv", b"stock_code,side,volume\n600036,buy,100\n"), "dry_run": "true"})
    assert reply.status == 200 and reply.json["data"]["results"][0]["status"] == "valid"
    assert reply.json["data"]["dry_run"] is True
    assert system.dbs[1].query("SELECT 1 FROM orders") == []


class HeldBroker:
    """The sim broker with `place_order` held until the test releases it (a file in the middle of a line)."""

    def __init__(self, inner):
        self.inner = inner
        self.entered = threading.Event()
        self.release = threading.Event()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def place_order(self, request):
        self.entered.set()
        assert self.release.wait(30)
        return self.inner.place_order(request)


def _answer_within(seconds: float, call):
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("reply", call()), daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(seconds)
    assert "reply" in box, f"no answer within {seconds} s"
    return box["reply"], time.monotonic() - started


def test_uploads_during_a_running_file_answer_at_once_and_a_dry_run_never_orders(tmp_path):
    held = []
    system = build_system(tmp_path, overrides={"BROKER_CALL_TIMEOUT": 30.0},
                          wrap_broker=lambda sim: held.append(HeldBroker(sim)) or held[0])
    inbox = tmp_path / "inbox"
    intake = OrderFileIntake(OrderFileStore(system.dbs[1], system.clock), system.executor, system.positions,
                             system.settings, inbox)
    system.ctx.order_files = intake
    server = start_server(system)
    client = Client(server.port, timeout=30.0)
    worker = None
    try:
        first = upload(client, {"file": ("first.csv", "证券代码,方向,数量\n600036.SH,买,100\n".encode("utf-8"))})
        assert first.status == 200, first.text
        worker = threading.Thread(target=intake.scan, daemon=True)  # the worker thread's step
        worker.start()
        assert held[0].entered.wait(10), "the first file never reached the broker"
        dry, seconds = _answer_within(5.0, lambda: upload(client, {
            "file": ("check.csv", "证券代码,方向,数量\n000001,买,100\n000001,买,50\n".encode("gbk")),
            "dry_run": "true"}))
        assert dry.status == 200, dry.text
        data = dry.json["data"]
        assert (data["dry_run"], data["status"], data["ok"], data["failed"]) == (True, "error", 1, 1)
        assert [r["status"] for r in data["results"]] == ["valid", "failed"]
        assert sorted(p.name for p in inbox.iterdir() if p.is_file()) == ["first.csv"]  # never in the inbox
        real, _ = _answer_within(5.0, lambda: upload(client, {
            "file": ("second.csv", "证券代码,方向,数量\n000001.SZ,买,100\n".encode("utf-8"))}))
        assert (real.status, real.json["data"]["status"]) == (200, "processing")
        held[0].release.set()
        worker.join(30)
        assert not worker.is_alive()
        while (inbox / "second.csv").exists():  # the worker's next steps
            intake.scan()
        orders = system.dbs[1].query("SELECT stock_code, volume FROM orders ORDER BY seq")
        assert [tuple(r) for r in orders] == [("600036.SH", 100), ("000001.SZ", 100)]  # nothing of the dry run
        assert sorted(p.name for p in (inbox / "done").iterdir()) == [
            "first.csv", "first.result.csv", "second.csv", "second.result.csv"]
    finally:
        held[0].release.set()
        if worker is not None:
            worker.join(30)
        client.close()
        server.stop()
        system.close()


@pytest.mark.parametrize("parts, status, code", [
    ({"dry_run": "true"}, 400, "MISSING_FIELD"),
    ({"file": ("a.csv", b"x"), "colour": "red"}, 400, "UNKNOWN_FIELD"),
    ({"file": ("a.csv", b"x"), "dry_run": "maybe"}, 400, "INVALID_REQUEST"),
])
def test_bad_uploads_are_400(served, parts, status, code):
    _, client, _ = served
    reply = upload(client, parts)
    assert (reply.status, reply.json["code"]) == (status, code)


def test_wrong_media_type_and_switch_off(served):
    system, client, _ = served
    reply = client.post("/api/order-files", raw=b"stock_code,side,volume\n", content_type="text/csv")
    assert reply.status == 415
    system.settings.update({"ENABLE_ORDER_FILES": False}, source="test")
    off = upload(client, {"file": ("a.csv", b"stock_code,side,volume\n")})
    assert off.status == 409 and off.json["code"] == "ORDER_FILES_DISABLED"
    assert client.post("/api/order-files", raw=b"x", content_type="multipart/form-data; boundary=z",
                       token=None).status == 401


def test_diagnostics_route(served):
    _, client, _ = served
    data = client.get("/api/diagnostics").json["data"]
    levels = {c["key"]: c["level"] for c in data["checks"]}
    assert levels["port"] == "ok" and levels["broker"] == "ok" and levels["config"] == "ok"
    assert data["errors"] == sum(1 for c in data["checks"] if c["level"] == "error")


def test_uploads_during_shutdown_are_answered_and_the_dry_run_stays_out_of_the_inbox(served):
    """Before: on SIGTERM the upload's processing returned nothing and the route failed (AttributeError),
    leaving the dry-run file in the live inbox."""
    system, client, inbox = served
    stopping = threading.Event()
    system.ctx.order_files = OrderFileIntake(OrderFileStore(system.dbs[1], system.clock), system.executor,
                                             system.positions, system.settings, inbox, stop=stopping)
    stopping.set()  # the daemon is shutting down
    dry = upload(client, {"file": ("d.csv", b"stock_code,side,volume\n600036,buy,100\n"), "dry_run": "true"})
    assert (dry.status, dry.json["data"]["status"], dry.json["data"]["ok"]) == (200, "done", 1)
    real = upload(client, {"file": ("r.csv", b"stock_code,side,volume\n600036,buy,100\n")})
    assert (real.status, real.json["data"]["status"]) == (200, "processing")
    assert sorted(p.name for p in inbox.iterdir() if p.is_file()) == ["r.csv"]  # resumed at the next start
    assert system.dbs[1].query("SELECT 1 FROM orders") == []
