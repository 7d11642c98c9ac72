"""The daemon as a process and as built by daemon/composition.py: SIGTERM exits 0 within 10 s leaving every
database clean; a second instance on the same data dir, an invalid configuration and `--live` on a machine
without miniQMT are refused with exit code ≠ 0 and a Chinese message (no traceback); a thread made to raise
and a thread made to hang are restarted and shown as restarted by /api/health; outside trading sessions the
loops sleep until the next session (near-zero CPU)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import date, datetime
from pathlib import Path

import pytest

from daemon_support import PROJECT, TDX, cpu_seconds, free_port, integrity, launch, query, start_ready, wait_until

SYNTHETIC_POOL = [f"{600000 + i}.SH" for i in range(10)] + [f"{i:06d}.SZ" for i in range(1, 11)]
TRADING = {"DATA_SOURCE": "replay", "ENABLE_AUTO_TRADING": True, "ENABLE_MA_FILTER": False,
           "REPLAY_TICKS_PER_DAY": 10, "MONITOR_INTERVAL": 0.2, "SIGNAL_MAX_AGE": 3600,
           "ORDER_CHECK_INTERVAL": 0.5, "POSITION_SYNC_INTERVAL": 0.5, "THREAD_CHECK_INTERVAL": 0.5}


def _run_main(root: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """main.py to completion (for the refusals), with a fresh free port unless given."""
    command = [sys.executable, str(PROJECT / "main.py"), "--data-dir", str(root / "data"),
               "--log-dir", str(root / "logs")]
    if "--port" not in args:
        command += ["--port", str(free_port())]
    env = {k: v for k, v in os.environ.items() if k != "QMT_API_TOKEN"}
    return subprocess.run(command + list(args), cwd=root, capture_output=True, text=True, encoding="utf-8",
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def _pool(root: Path, codes: list[str]) -> Path:
    path = root / "pool.json"
    path.write_text(json.dumps(codes), encoding="utf-8")
    return path


def test_sigterm_exits_0_within_10_s_with_clean_databases_and_a_second_instance_is_refused(tmp_path):
    daemon = start_ready(tmp_path, ["--stock-pool", str(_pool(tmp_path, SYNTHETIC_POOL)), "--replay-speed", "0.4"],
                         TRADING)
    try:
        trading_db = tmp_path / "data" / "sim_trading.db"
        wait_until(lambda: query(trading_db, "SELECT COUNT(*) FROM trade_records")[0][0] > 0, 60,
                   "the daemon to trade", daemon)

        second = _run_main(tmp_path, "--replay-speed", "0.4")
        assert second.returncode == 3
        assert "拒绝启动" in second.stderr and "已被另一个守护进程使用" in second.stderr
        assert "Traceback" not in second.stderr + second.stdout
        assert daemon.api("/api/health")["all_alive"], "the refused instance left the running one alone"

        code, seconds = daemon.terminate(10)
    finally:
        daemon.stop_quietly()
    assert code == 0, daemon.output()
    assert seconds < 10
    assert "已安全退出" in daemon.output()
    assert integrity(tmp_path / "data") == {"config.db": "ok", "jobs.db": "ok", "market.db": "ok", "notify.db": "ok",
                                           "sim_trading.db": "ok"}
    # closed cleanly: every write-ahead log was checkpointed into its database and removed
    assert [p.name for p in (tmp_path / "data").glob("*-wal") if p.stat().st_size > 0] == []
    # the position table a restart loads agrees with the broker's book
    positions = query(trading_db, "SELECT stock_code, volume FROM positions ORDER BY stock_code")
    broker = query(trading_db, "SELECT stock_code, volume FROM sim_positions WHERE volume > 0 ORDER BY stock_code")
    assert [tuple(r) for r in positions] == [tuple(r) for r in broker]
    # and the data dir is free again at once (the instance lock went with the process)
    again = start_ready(tmp_path, ["--stock-pool", str(tmp_path / "pool.json"), "--replay-speed", "0.4"], TRADING)
    try:
        assert again.terminate(10)[0] == 0
    finally:
        again.stop_quietly()


def test_sigterm_during_start_up_is_honoured_once_built(tmp_path):
    daemon = launch(tmp_path, ["--stock-pool", str(_pool(tmp_path, SYNTHETIC_POOL))], {"DATA_SOURCE": "replay"})
    try:
        wait_until(lambda: "行情来源：" in daemon.output(), 60, "the build to reach the data source", daemon)
        code, seconds = daemon.terminate(10)
    finally:
        daemon.stop_quietly()
    assert code == 0, daemon.output()
    assert "已安全退出" in daemon.output()
    assert set(integrity(tmp_path / "data").values()) == {"ok"}


@pytest.mark.parametrize("setting, named", [
    ("STOP_LOSS_RATIO=0.5", "STOP_LOSS_RATIO"),
    ("NO_SUCH_PARAMETER=1", "NO_SUCH_PARAMETER"),
    ("DYNAMIC_TAKE_PROFIT=[[0.10,0.93],[0.05,0.96]]", "DYNAMIC_TAKE_PROFIT"),
])
def test_an_invalid_configuration_is_refused_with_a_clear_message(tmp_path, setting, named):
    result = _run_main(tmp_path, "--set", setting)
    assert result.returncode == 2
    assert result.stderr.startswith("配置无效，拒绝启动：") and named in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "data" / "sim_trading.db").exists(), "nothing was built"


@pytest.mark.skipif(os.name == "nt", reason="on Windows --live may find a real miniQMT")
@pytest.mark.parametrize("extra", [(), ("--set", "DATA_SOURCE=mootdx", "--set", f"TDX_DIR={TDX}")])
def test_live_mode_on_this_machine_fails_fast_with_a_clear_message(tmp_path, extra):
    started = time.monotonic()
    result = _run_main(tmp_path, "--live", *extra)
    elapsed = time.monotonic() - started
    assert result.returncode == 4
    assert "启动失败：无法加载 xtquant 的交易模块" in result.stderr
    assert "miniQMT" in result.stderr and "模拟模式" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert elapsed < 30  # no waiting for a broker that cannot exist here (about 1.5 s unloaded)


# ---- watchdog in the composed daemon ---------------------------------------------------------------

def _get_json(port: int, path: str, token: str) -> dict:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"X-API-Token": token})
    with opener.open(request, timeout=10) as response:
        return json.loads(response.read().decode("utf-8"))["data"]


def test_built_daemon_restarts_a_raising_and_a_hanging_thread_and_health_shows_it(tmp_path):
    from daemon.composition import build_daemon
    from persistence.config_store import ConfigStore
    from logger import SecretFilter
    from persistence.storage import Database

    port = free_port()
    settings = ConfigStore(Database(tmp_path / "config.db"), run_overrides={
        "DATA_SOURCE": "replay", "REPLAY_SECONDS_PER_DAY": 2.0, "WEB_PORT": port, "THREAD_STUCK_SECONDS": 2.0,
        "THREAD_CHECK_INTERVAL": 0.5, "MONITOR_INTERVAL": 0.2,
        "BROKER_CALL_TIMEOUT": 1.0})  # the monitor declares 2 × 1 + 10 s as its longest step
    daemon = build_daemon(settings, tmp_path / "data", tmp_path / "logs", SecretFilter(), _pool(tmp_path, ["600000"]))
    data, monitor = daemon.components["data"], daemon.components["monitor"]
    original_step, original_pass = data.run_once, monitor.run_once
    release = threading.Event()
    hung = threading.Event()

    def step_that_raises_once():
        data.run_once = original_step
        raise RuntimeError("injected data fault")

    def pass_that_hangs_once():
        monitor.run_once = original_pass
        hung.set()
        release.wait(30)  # no heartbeat while hanging
        return []

    data.run_once = step_that_raises_once  # looked up on the instance by the workers at each call
    monitor.run_once = pass_that_hangs_once
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(daemon.run()), name="daemon-main")
    runner.start()
    try:
        token = (tmp_path / "data" / "api_token").read_text(encoding="utf-8").strip()

        def restarted():
            threads = {t["name"]: t for t in _get_json(port, "/api/health", token)["threads"]}
            done = threads["data"]["restarts"] >= 1 and threads["monitor"]["restarts"] >= 1
            return threads if done and all(t["alive"] for t in threads.values()) else None
        threads = wait_until(restarted, 30, "both faulty threads to be restarted")
        assert hung.is_set()
        assert (threads["data"]["restarts"], threads["monitor"]["restarts"]) == (1, 1)
        assert {t["restarts"] for n, t in threads.items() if n not in ("data", "monitor")} == {0}
        assert all(t["alarm"] == "" for t in threads.values())
        # the restarted data thread works again: the replay clock moves on
        first = _get_json(port, "/api/status", token)["clock"]
        wait_until(lambda: _get_json(port, "/api/status", token)["clock"] != first, 20, "the market clock to move")
    finally:
        release.set()
        daemon.stop_event.set()
        runner.join(15)
    assert result == [0]
    assert not runner.is_alive()


# ---- outside trading sessions ------------------------------------------------------------------------

def _real_clock_closed_for(seconds: float) -> bool:
    from market.clock import RealClock

    clock = RealClock()
    return not clock.is_trading() and clock.seconds_until_session() > seconds


@pytest.mark.skipif(not _real_clock_closed_for(300), reason="the real market is in (or near) a trading session now")
def test_outside_sessions_the_daemon_sleeps_near_zero_cpu(tmp_path):
    sets = {"DATA_SOURCE": "mootdx", "TDX_DIR": str(TDX) if TDX.is_dir() else ""}
    daemon = start_ready(tmp_path, ["--stock-pool", str(_pool(tmp_path, []))], sets)
    try:
        status = daemon.api("/api/status")
        assert status["data_source"]["source"] == "mootdx" and status["clock"]["session"] not in (
            "call_auction", "continuous", "closing_auction")
        window = 8.0
        before, started = cpu_seconds(daemon.pid), time.monotonic()
        wait_until(lambda: time.monotonic() - started >= window, window + 5, "the measuring window", daemon)
        used = cpu_seconds(daemon.pid) - before
        elapsed = time.monotonic() - started
        assert used / elapsed < 0.02, f"{used:.3f} s CPU in {elapsed:.1f} s outside sessions"
        assert daemon.api("/api/health")["all_alive"], "the sleeping threads still beat"
        assert daemon.terminate(10)[0] == 0
    finally:
        daemon.stop_quietly()


class _FakeTime:
    def __init__(self):
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


class _ClosedMarket:
    """A market clock that is closed until `opens_in` seconds of `time` have passed."""

    is_replay = False

    def __init__(self, time: _FakeTime, opens_in: float):
        self._time, self._opens_at = time, time.value + opens_in

    def is_trading(self) -> bool:
        return self._time.value >= self._opens_at

    def seconds_until_session(self) -> float:
        return max(0.0, self._opens_at - self._time.value)


class _RecordingStop:
    """Stands in for the worker's stop event: records how long each wait asked for, returns at once."""

    def __init__(self, time: _FakeTime):
        self._time = time
        self.waits: list[float] = []

    def wait(self, timeout: float) -> bool:
        self.waits.append(timeout)
        self._time.value += timeout
        return False


def test_interval_worker_outside_sessions_runs_only_at_the_next_session_while_still_beating(tmp_path):
    from persistence.config_store import ConfigStore
    from daemon.daemon_workers import IntervalWorker
    from persistence.storage import Database

    settings = ConfigStore(Database(tmp_path / "c.db"), run_overrides={"ORDER_CHECK_INTERVAL": 5.0})
    now = _FakeTime()
    calls = []
    worker = IntervalWorker("orders", lambda: calls.append(now.value), settings, "ORDER_CHECK_INTERVAL",
                            _ClosedMarket(now, opens_in=3600), only_in_session=True, now=now)
    stop = _RecordingStop(now)
    while now.value < 1000 + 3600 + 10:  # the runner's loop: wait at most `limit`, then run when due
        worker.wait(stop, 15.0)
        if worker.is_due():
            worker.run_once()
    assert max(stop.waits) == 15.0, "the heartbeat limit bounds every wait"
    assert calls == [1000 + 3600, 1000 + 3600 + 5, 1000 + 3600 + 10], "no call before the session opens"


def test_data_worker_waits_as_long_as_its_source_asks_even_beyond_the_heartbeat_limit():
    from daemon.daemon_workers import DataWorker

    now = _FakeTime()

    class Source:
        def __init__(self):
            self.steps = []

        def set_watchlist(self, codes):
            pass

        def run_once(self):
            self.steps.append(now.value)
            return 3600.0 if len(self.steps) == 1 else 60.0  # closed until the session, then 60 s polls

    source = Source()
    worker = DataWorker(source, lambda: [], now=now)
    stop = _RecordingStop(now)
    while now.value < 1000 + 3600 + 61:
        worker.wait(stop, 15.0)
        if worker.is_due():
            worker.run_once()
    assert source.steps == [1000, 1000 + 3600, 1000 + 3660]
    assert max(stop.waits) == 15.0


@pytest.mark.skipif(not (TDX / "vipdoc" / "sh" / "lday" / "sh600000.day").is_file(),
                    reason=f"TDX day files not found at {TDX}")
def test_mootdx_bars_are_re_read_only_when_something_new_can_be_there(tmp_path, monkeypatch):
    """The data thread's bar refresh (every UPDATE_INTERVAL, also outside sessions) reads a .day file only when
    a newer final bar can be in it: re-reading 300 whole files every minute kept a core busy."""
    import os
    import shutil
    from datetime import datetime as dt

    import market.mootdx_source as mootdx_source
    from market.bar_store import BarStore
    from persistence.config_store import ConfigStore
    from market.clock import MARKET_TZ, RealClock
    from persistence.storage import Database

    monkeypatch.setenv("HOME", str(tmp_path))  # mootdx keeps its own files out of the real home
    folder = tmp_path / "tdx" / "vipdoc" / "sh" / "lday"
    folder.mkdir(parents=True)
    day_file = folder / "sh600000.day"  # a private copy (its time stamp is changed below); ends 2025-08-05
    shutil.copyfile(TDX / "vipdoc" / "sh" / "lday" / "sh600000.day", day_file)
    now = [dt(2025, 8, 6, 10, 0)]
    clock = RealClock(source=lambda: now[0].replace(tzinfo=MARKET_TZ))
    settings = ConfigStore(Database(tmp_path / "c.db"), run_overrides={"TDX_DIR": str(tmp_path / "tdx")})
    reads: list[str] = []
    real_open = mootdx_source.open_tdx_reader

    class CountingReader:  # the real reader; counts the whole-file reads
        def __init__(self, reader):
            self._reader = reader

        def daily(self, symbol):
            reads.append(symbol)
            return self._reader.daily(symbol=symbol)

        def __getattr__(self, name):
            return getattr(self._reader, name)

    monkeypatch.setattr(mootdx_source, "open_tdx_reader", lambda path: CountingReader(real_open(path)))
    bars = BarStore(Database(tmp_path / "market.db"))
    source = mootdx_source.MootdxSource(settings, clock, bars, tmp_path)
    source.start(lambda quote: True)
    source.set_watchlist(["600000.SH"])

    def refresh_at(moment: datetime) -> list:
        now[0] = moment
        step = source.run_once()
        bars.upsert(step.bars)
        return [b.day for b in step.bars]

    assert refresh_at(dt(2025, 8, 6, 10, 0))[-1] == date(2025, 8, 5) and len(reads) == 1
    assert refresh_at(dt(2025, 8, 6, 11, 0)) == [] and len(reads) == 1, "up to date before the close: not read"
    assert refresh_at(dt(2025, 8, 6, 15, 5)) == [] and len(reads) == 2, "after the close today's bar may be there"
    assert refresh_at(dt(2025, 8, 9, 12, 0)) == [] and len(reads) == 3, "Saturday: Friday's bar may be there"
    assert refresh_at(dt(2025, 8, 10, 12, 0)) == [] and len(reads) == 3, "the same file, nothing new: not read"
    stat = day_file.stat()
    os.utime(day_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # TDX rewrote the file
    assert refresh_at(dt(2025, 8, 10, 13, 0)) == [] and len(reads) == 4


def test_a_start_that_fails_late_closes_everything_it_had_opened(tmp_path):
    """The web port is taken: the start is refused after the databases, the data source, the notifier and
    the log tail were opened; each is closed again (the trading db checkpointed, no handler left behind)."""
    import logging
    import socket

    from daemon.composition import build_daemon
    from persistence.config_store import ConfigStore
    from logger import SecretFilter
    from core.models import TradingError
    from persistence.storage import Database
    from persistence.health import MARKER_NAME
    from webapi.log_tail import LogTail

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    settings = ConfigStore(Database(tmp_path / "config.db"), run_overrides={
        "DATA_SOURCE": "replay", "WEB_PORT": taken.getsockname()[1]})
    handlers_before = list(logging.getLogger().handlers)
    try:
        with pytest.raises(TradingError) as refused:
            build_daemon(settings, tmp_path / "data", tmp_path / "logs", SecretFilter(), _pool(tmp_path, ["600000"]))
    finally:
        taken.close()
    assert refused.value.code == "WEB_START_FAILED" and "端口" in refused.value.message
    assert not any(isinstance(h, LogTail) for h in logging.getLogger().handlers[len(handlers_before):])
    for name in ("sim_trading.db", "market.db", "notify.db", "jobs.db"):
        assert (tmp_path / "data" / name).exists()
        wal = tmp_path / "data" / f"{name}-wal"
        assert not wal.exists() or wal.stat().st_size == 0, f"{name} was left open"  # closed: checkpointed
    assert not (tmp_path / "data" / MARKER_NAME).exists()  # a start that failed did not make the dir "used"
