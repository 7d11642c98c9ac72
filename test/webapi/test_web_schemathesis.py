"""The API contract fuzzed: `schemathesis` (its CLI, as an operator would run it) against a real `python main.py`
on loopback with the token, over every operation of /api/openapi.json, with EVERY check on: no 5xx; every answer's
status code, content type, headers and body match the document; a request the document forbids is refused and one
it allows is not refused (400); the token is demanded exactly where the document says (on loopback, reads are open
and the document says so per operation). The few rules a JSON schema cannot state (a date range's order, the board
lot and price tick of the code given, what the current state allows) are listed in SCHEMA_CANNOT_SAY with the rule:
there only the "a schema-valid request is accepted" check is off, every other check still runs.
The run is bounded and reproducible: a fixed seed, MAX_EXAMPLES per operation, a request timeout. The number of
generated cases is printed in pytest's output on every run. The daemon runs behind a test-only network guard
(test/net_guard/sitecustomize.py): a notification channel the fuzzer adds cannot make it contact any host but
loopback."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from daemon_support import start_ready, wait_until
from test_notify_daemon import call

pytestmark = pytest.mark.slow

# schemathesis 4 turns every check on unless told otherwise (each check's `enabled` defaults to true); `--checks all`
# on the command line is not used because it would also override the per-operation exemptions of the config file.
CHECKS = "all"
MAX_EXAMPLES = 25
SEED = 19
# The live streams never end by design; their contracts are covered by test_web_stream / test_web_pages_api.
NOT_FUZZED = ("/api/positions/stream", "/api/logs/stream")
NET_GUARD = Path(__file__).resolve().parents[1] / "net_guard"
# (method, path): the rule the server checks that the document states in words only (a JSON schema cannot
# compare two fields, look up the code's board, or know today's date, quotes and stored records)
SCHEMA_CANNOT_SAY = {
    ("GET", "/api/trade-records"): "开始日期不能晚于结束日期",
    ("GET", "/api/data/history/{code}"): "开始日期不能晚于结束日期",
    ("GET", "/api/performance"): "开始日期不能晚于结束日期",
    ("POST", "/api/actions/execute_buy"): "买入数量按板块的手数（科创板至少 200 股），价格按该代码的最小价位",
    ("POST", "/api/actions/execute_sell"): "价格按该代码的最小价位",
    ("POST", "/api/config/update"): "各参数的取值范围与参数之间的约束（参数表）",
    ("POST", "/api/config/reset"): "只有被覆盖的参数才能恢复",
    ("POST", "/api/config/rollback"): "修改记录必须存在",
    ("PUT", "/api/stock-params/{code}"): "个股参数的取值规则（参数表）",
    ("POST", "/api/notify/channels"): "apprise 通知地址的语法",
    ("POST", "/api/watch/tasks"): "到期日不早于今天，价格区间在今日涨跌停范围内",
    ("PUT", "/api/watch/tasks/{task_id}"): "到期日不早于今天，价格区间在今日涨跌停范围内",
}


def _schemathesis() -> list[str]:
    found = shutil.which("schemathesis") or shutil.which("st")
    return [found] if found else [sys.executable, "-m", "schemathesis.cli"]


def _config(path: Path) -> Path:
    """schemathesis.toml: positive_data_acceptance off for SCHEMA_CANNOT_SAY only."""
    blocks = [f'# {rule}\n[[operations]]\ninclude-method = "{method}"\ninclude-path = "{route}"\n'
              f"checks.positive_data_acceptance.enabled = false\n"
              for (method, route), rule in SCHEMA_CANNOT_SAY.items()]
    path.write_text("\n".join(blocks), encoding="utf-8")
    return path


def test_schemathesis_with_every_check_finds_no_contract_violation(tmp_path, capsys, monkeypatch):
    guard_log = tmp_path / "net_guard.log"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(NET_GUARD), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("NET_GUARD_LOG", str(guard_log))
    daemon = start_ready(tmp_path, ["--replay-speed", "5"], {"DATA_SOURCE": "replay", "ORDER_FILE_QUOTE_WAIT": 0.5})
    try:
        status, spec, _ = call(daemon, "GET", "/api/openapi.json")
        assert status == 200
        documented = {(method.upper(), path) for path, methods in spec["paths"].items() for method in methods}
        assert sorted(set(SCHEMA_CANNOT_SAY) - documented) == []  # an exemption never outlives its route
        command = _schemathesis() + [
            "--config-file", str(_config(tmp_path / "schemathesis.toml")),
            "run", f"http://127.0.0.1:{daemon.port}/api/openapi.json", "-H", f"X-API-Token: {daemon.token()}",
            *[arg for path in NOT_FUZZED for arg in ("--exclude-path", path)],
            "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--workers", "2", "--request-timeout", "20",
            "--no-color", "--report", "junit", "--report-dir", str(tmp_path / "report")]
        run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, encoding="utf-8", timeout=600,
                             stdin=subprocess.DEVNULL)
        output = run.stdout + run.stderr
        generated = re.search(r"(\d+) generated", output)
        operations = re.search(r"Tested: (\d+)", output)
        guarded = guard_log.read_text(encoding="utf-8").splitlines()
        with capsys.disabled():  # in the run's output even without -s (CI keeps it in its log)
            print(f"\nschemathesis (checks {CHECKS}): {generated.group(1) if generated else '?'} generated cases over "
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

