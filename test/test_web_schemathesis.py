"""The API contract fuzzed: `schemathesis` (its CLI, as an operator would run it) against a real `python main.py`
on loopback with the token, over every operation of /api/openapi.json: no 5xx, and every answer's status code,
content type, headers and body match the document. The number of generated cases is printed in pytest's output
on every run. The daemon runs behind a test-only network guard (test/net_guard/sitecustomize.py): a notification
channel the fuzzer adds cannot make it contact any host but loopback."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from daemon_support import start_ready, wait_until
from test_notify_daemon import call

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,"
          "response_schema_conformance")
MAX_EXAMPLES = 25
SEED = 19
# The live streams never end by design; their contracts are covered by test_web_stream / test_web_pages_api.
NOT_FUZZED = ("/api/positions/stream", "/api/logs/stream")
NET_GUARD = Path(__file__).resolve().parent / "net_guard"


def _schemathesis() -> list[str]:
    found = shutil.which("schemathesis") or shutil.which("st")
    return [found] if found else [sys.executable, "-m", "schemathesis.cli"]


def test_schemathesis_finds_no_5xx_and_no_contract_violation(tmp_path, capsys, monkeypatch):
    guard_log = tmp_path / "net_guard.log"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(NET_GUARD), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("NET_GUARD_LOG", str(guard_log))
    daemon = start_ready(tmp_path, ["--replay-speed", "5"], {"DATA_SOURCE": "replay", "ORDER_FILE_QUOTE_WAIT": 0.5})
    try:
        command = _schemathesis() + [
            "run", f"http://127.0.0.1:{daemon.port}/api/openapi.json", "-H", f"X-API-Token: {daemon.token()}",
            "--checks", CHECKS, *[arg for path in NOT_FUZZED for arg in ("--exclude-path", path)], "--max-examples", str(MAX_EXAMPLES),
            "--seed", str(SEED), "--workers", "2", "--request-timeout", "20", "--no-color",
            "--report", "junit", "--report-dir", str(tmp_path / "report")]
        run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, encoding="utf-8", timeout=600,
                             stdin=subprocess.DEVNULL)
        output = run.stdout + run.stderr
        generated = re.search(r"(\d+) generated", output)
        operations = re.search(r"Tested: (\d+)", output)
        guarded = guard_log.read_text(encoding="utf-8").splitlines()
        with capsys.disabled():  # in the run's output even without -s (CI keeps it in its log)
            print(f"\nschemathesis: {generated.group(1) if generated else '?'} generated cases over "
                  f"{operations.group(1) if operations else '?'} operations (seed {SEED}); "
                  f"{sum(line.startswith('refused') for line in guarded)} non-loopback lookups refused")
        assert f"guard active in pid {daemon.proc.pid}" in guarded
        # the guard holds on the notifier's path: a channel to another host is refused at the name lookup
        status, reply, _ = call(daemon, "POST", "/api/notify/channels", {"url": "json://notify.example.org/hook"})
        assert status == 201, reply
        assert call(daemon, "POST", "/api/notify/test", {"channel_id": reply["data"]["channel"]["id"]})[0] == 202
        wait_until(lambda: "refused getaddrinfo 'notify.example.org'" in guard_log.read_text(encoding="utf-8"), 20,
                   "the notifier's lookup to be refused", daemon)
        assert run.returncode == 0, output[-8000:]
        assert generated and int(generated.group(1)) >= 500, output[-3000:]
        spec_ops = int(re.search(r"Operations:\s+(\d+) selected / (\d+) total", output).group(2))
        assert int(operations.group(1)) == spec_ops - len(NOT_FUZZED)  # every operation but the streams
        assert daemon.poll() is None, daemon.output()
        assert "Traceback" not in daemon.output(20000)
    finally:
        daemon.stop_quietly()
