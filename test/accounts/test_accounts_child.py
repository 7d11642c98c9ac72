"""An account's process as the supervisor handles it (with tiny stand-in commands instead of the daemon):
an unexpected exit is restarted after a doubling back-off, and after the hourly cap an alarm is raised and no
more restarts happen; a stop is graceful (SIGTERM) and not counted as a crash. Also: a daemon started for the
supervisor refuses reads without its token and never writes its token into the page, and shuts down by itself
when its supervisor is killed (no orphan keeps trading)."""
import os
import sys
from pathlib import Path

from accounts.child import AccountChild, ChildPaths, ChildState, RestartPolicy
from accounts.config import AccountSpec
from daemon_support import wait_until
from web_test_support import Client, build_system, start_server


class Ticker:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def child(tmp_path: Path, script: str, now: Ticker, alarms: list) -> AccountChild:
    spec = AccountSpec("sim1", "模拟一", "simulation")
    paths = ChildPaths(tmp_path / "data", tmp_path / "logs", tmp_path / "sim1.console.log")
    return AccountChild(spec, paths, lambda: {}, lambda: RestartPolicy(limit_per_hour=2, backoff_max=4.0),
                        command_for=lambda launch: [sys.executable, "-c", script], now=now,
                        on_alarm=lambda account, message: alarms.append(message))


def wait_exit(handle: AccountChild) -> None:
    handle._proc.wait(30)


def test_a_crashing_child_is_restarted_with_back_off_then_given_up_with_one_alarm(tmp_path):
    now, alarms = Ticker(), []
    handle = child(tmp_path, "import sys; sys.exit(3)", now, alarms)
    handle.start()
    wait_exit(handle)
    assert "意外退出（退出码 3），1 秒后自动重启" in handle.supervise()
    assert handle.state == ChildState.BACKOFF and handle.supervise() is None  # not yet due
    now.t += 1.0
    assert "已自动重启（本小时第 1 次）" in handle.supervise() and handle.state == ChildState.RUNNING
    wait_exit(handle)
    assert "2 秒后自动重启" in handle.supervise()  # the back-off doubled
    now.t += 2.0
    handle.supervise()
    wait_exit(handle)
    message = handle.supervise()
    assert handle.state == ChildState.FAILED and "一小时内已自动重启 2 次仍退出" in message
    assert alarms == [message] and handle.alarm == message
    now.t += 3600
    assert handle.supervise() is None and handle.state == ChildState.FAILED  # only a person restarts it
    handle.start()
    assert handle.alarm == "" and handle.state == ChildState.RUNNING
    wait_exit(handle)


def test_a_stop_is_graceful_and_not_a_crash(tmp_path):
    now, alarms = Ticker(), []
    ready = tmp_path / "ready"
    script = ("import pathlib, signal, sys, time\n"
              "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
              f"pathlib.Path({str(ready)!r}).write_text('1')\n"
              "time.sleep(60)\n")
    handle = child(tmp_path, script, now, alarms)
    handle.start()
    wait_until(ready.exists, 30, "the stand-in to install its SIGTERM handler")
    assert handle.is_running() and handle.port > 0 and len(handle.token) >= 32
    assert handle.stop(timeout=10) == 0
    assert handle.state == ChildState.STOPPED and handle.supervise() is None and handle.restart_count == 0


def test_a_supervised_daemon_answers_reads_only_with_its_token(tmp_path):
    system = build_system(tmp_path, overrides={"WEB_REQUIRE_TOKEN_FOR_READS": True})
    server = start_server(system)
    client = Client(server.port)
    try:
        reply = client.get("/api/status", token=None)
        assert reply.status == 401 and reply.json["code"] == "AUTH_REQUIRED"
        assert client.get("/api/status").status == 200
        page = client.get("/", token=None)
        assert page.status == 200 and system.ctx.token not in page.text
    finally:
        client.close()
        server.stop()
        system.close()


def test_the_lifeline_is_cut_only_for_a_supervised_daemon_whose_supervisor_is_gone():
    from accounts.lifeline import Lifeline, process_alive

    running = {4242}
    assert Lifeline(0, lambda pid: False).gone() is False  # run alone: never
    line = Lifeline(4242, lambda pid: pid in running)
    assert line.gone() is False
    running.clear()
    assert line.gone() is True
    assert process_alive(os.getpid()) and not process_alive(0)


def test_children_of_a_killed_supervisor_shut_down_instead_of_trading_on(tmp_path):
    from accounts_support import both_running, launch_supervisor
    from accounts.lifeline import process_alive

    accounts = [{"id": "sim1"}, {"id": "sim2"}]
    sup = launch_supervisor(tmp_path, accounts, ["--replay-speed", "30"], {"THREAD_CHECK_INTERVAL": 1.0})
    try:
        children = wait_until(lambda: both_running(sup, 2), 120, "both accounts running")
        sup.proc.kill()  # the supervisor dies without its graceful shutdown
        sup.proc.wait(30)
        pids = [a["pid"] for a in children.values()]
        wait_until(lambda: not any(process_alive(pid) for pid in pids), 60, "the orphaned children to exit")
        for account_id in ("sim1", "sim2"):
            log = (tmp_path / "logs" / "accounts" / f"{account_id}.console.log").read_text(encoding="utf-8")
            assert "多账户监管进程" in log and "已不在运行，本账户安全退出" in log and "已安全退出" in log
    finally:
        sup.stop_quietly()
