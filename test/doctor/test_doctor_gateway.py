"""The doctor with BROKER = "remote" (issue 30) against a real qmt_gateway on loopback wrapping the paper account:
a signed request answered, the clock skew, the gateway's own broker link, read-only mode, the round trip; and the
failures an operator meets (wrong token, address not allowed, gateway not running, clocks too far apart)."""
from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

import doctor.checks as doctor
from daemon_support import PROJECT, free_port
from gateway_support import TOKEN, Rig
from test_doctor import Settings


def remote_env(tmp_path, port, token=TOKEN, clock_offset=0.0, **changes):
    settings = Settings(ENABLE_SIMULATION_MODE=False, BROKER="remote", BROKER_URL=f"http://127.0.0.1:{port}",
                        BROKER_TOKEN=token, **changes)
    now = lambda: datetime.now(timezone.utc) + timedelta(seconds=clock_offset)  # noqa: E731
    return doctor.DoctorEnv(settings=settings, data_dir=tmp_path / "data", log_dir=tmp_path / "logs", now=now)


@pytest.fixture
def rig(tmp_path):
    rig = Rig(tmp_path / "gw")
    yield rig
    rig.close()


def test_a_healthy_gateway_is_reported_with_its_link_mode_round_trip_and_clock(tmp_path, rig):
    check = doctor.check_remote_gateway(remote_env(tmp_path, rig.gateway.port))
    assert check.level == doctor.OK, check
    assert check.key == "gateway"
    assert f"网关 http://127.0.0.1:{rig.gateway.port} 已应答签名请求（券商接口 sim）" in check.detail
    assert "网关的券商连接：正常；可交易" in check.detail
    skew = int(re.search(r"时钟相差约 ([+-]\d+) 秒", check.detail).group(1))
    assert -1 <= skew <= 1  # the Date header has whole seconds
    rtt = float(re.search(r"往返 ([\d.]+) 毫秒", check.detail).group(1))
    assert 0 < rtt < 200


def test_run_all_includes_the_gateway_check_once(tmp_path, rig):
    checks = doctor.run_all(remote_env(tmp_path, rig.gateway.port))
    found = [c for c in checks if c.key == "gateway"]
    assert len(found) == 1 and found[0].level == doctor.OK, found
    [broker] = [c for c in checks if c.key == "broker"]  # named after the back-end in use, not miniQMT
    assert broker.name == "远程网关 连接与账户查询"


def test_not_remote_is_not_checked(tmp_path):
    check = doctor.check_remote_gateway(doctor.DoctorEnv(settings=Settings(BROKER="miniqmt"), data_dir=tmp_path,
                                                         log_dir=tmp_path))
    assert (check.level, check.detail) == (doctor.OK, "未使用远程网关（BROKER 不是 remote）")


def test_missing_url_or_token_is_an_error(tmp_path):
    check = doctor.check_remote_gateway(remote_env(tmp_path, 5800, token=""))
    assert (check.level, check.detail) == (doctor.ERROR, "BROKER = remote 但未设置 BROKER_URL 或 BROKER_TOKEN")


def test_a_wrong_token_says_the_tokens_differ(tmp_path, rig):
    check = doctor.check_remote_gateway(remote_env(tmp_path, rig.gateway.port, token="not-the-gateway-token-0000"))
    assert (check.level, check.detail) == (doctor.ERROR, "令牌不符：网关拒绝了签名")
    assert "GATEWAY_TOKEN" in check.hint


def test_an_address_not_allowed_names_the_address_and_the_setting(tmp_path):
    rig = Rig(tmp_path / "gw", settings_overrides={"GATEWAY_ALLOWED_CLIENTS": ["10.9.9.9"]})
    try:
        check = doctor.check_remote_gateway(remote_env(tmp_path, rig.gateway.port))
    finally:
        rig.close()
    assert (check.level, check.detail) == (doctor.ERROR, "网关拒绝本机地址：客户端地址 127.0.0.1 不在网关的允许列表中")
    assert "GATEWAY_ALLOWED_CLIENTS" in check.hint


def test_a_gateway_not_running_is_unreachable(tmp_path):
    port = free_port()
    check = doctor.check_remote_gateway(remote_env(tmp_path, port))
    assert check.level == doctor.ERROR
    assert check.detail.startswith(f"无法连接网关 http://127.0.0.1:{port}（ConnectionRefusedError")
    assert "qmt_gateway 已启动" in check.hint


def test_clocks_beyond_the_window_are_refused_and_within_it_warned(tmp_path, rig):
    beyond = doctor.check_remote_gateway(remote_env(tmp_path, rig.gateway.port, clock_offset=120))
    assert (beyond.level, beyond.detail) == (doctor.ERROR, "两台机器时钟相差超过网关的时间窗口（约 30 秒），网关拒绝请求")
    within = doctor.check_remote_gateway(remote_env(tmp_path, rig.gateway.port, clock_offset=-12))
    assert within.level == doctor.WARNING, within
    skew = int(re.search(r"时钟相差约 ([+-]\d+) 秒", within.detail).group(1))
    assert 11 <= skew <= 13
    assert within.hint.startswith("两台机器时钟相差超过 5 秒")


def test_the_gateways_own_broker_link_down_is_an_error(tmp_path, rig):
    rig.sim.close()  # the paper account behind the gateway is disconnected (as miniQMT closed on the Windows box)
    check = doctor.check_remote_gateway(remote_env(tmp_path, rig.gateway.port))
    assert check.level == doctor.ERROR
    assert check.detail.endswith("网关的券商连接：未连接；可交易")
    assert "miniQMT" in check.hint


def test_a_read_only_gateway_is_a_warning(tmp_path):
    rig = Rig(tmp_path / "gw", settings_overrides={"GATEWAY_READ_ONLY": True})
    try:
        check = doctor.check_remote_gateway(remote_env(tmp_path, rig.gateway.port))
    finally:
        rig.close()
    assert check.level == doctor.WARNING
    assert check.detail.endswith("网关的券商连接：正常；只读模式（拒绝委托与撤单）")
    assert "GATEWAY_READ_ONLY" in check.hint


def test_a_slow_round_trip_is_a_warning(tmp_path, rig):
    check = doctor.check_remote_gateway(remote_env(tmp_path, rig.gateway.port, DOCTOR_GATEWAY_SLOW_MS=0.001))
    assert check.level == doctor.WARNING
    assert check.hint.startswith("往返超过 0.001 毫秒")


def test_main_doctor_with_a_wrong_token_exits_non_zero_saying_the_tokens_differ(tmp_path, rig):
    url = f"http://127.0.0.1:{rig.gateway.port}"
    done = subprocess.run([sys.executable, str(PROJECT / "main.py"), "--doctor", "--data-dir", str(tmp_path / "data"),
                           "--log-dir", str(tmp_path / "logs"), "--set", 'BROKER="remote"',
                           "--set", "ENABLE_SIMULATION_MODE=false", "--set", f'BROKER_URL="{url}"',
                           "--set", 'BROKER_TOKEN="not-the-gateway-token-0000"'],
                          capture_output=True, text=True, encoding="utf-8", timeout=120, cwd=tmp_path)
    assert done.returncode == 1
    assert "[错误] 远程网关（qmt_gateway）：令牌不符：网关拒绝了签名" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
