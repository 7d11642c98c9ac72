"""`python main.py --doctor` with BROKER = bigqmt: the bridge check sees the strategy running, its version and
bound account, and the round trip, over a side connection that leaves the daemon's own link alone."""
from __future__ import annotations

import doctor.checks as doctor
from persistence.config_store import ConfigStore
from persistence.storage import Database
from bigqmt_support import ACCOUNT_ID, make_broker, start_host


def doctor_env(tmp_path, port: int, **overrides) -> doctor.DoctorEnv:
    account = tmp_path / "account_config.json"
    account.write_text('{"account_id": "%s", "account_type": "STOCK"}' % ACCOUNT_ID, encoding="utf-8")
    settings = ConfigStore(Database(tmp_path / "doctor-config.db"), run_overrides={
        "ENABLE_SIMULATION_MODE": False, "BROKER": "bigqmt", "BIGQMT_PORT": port, **overrides})
    return doctor.DoctorEnv(settings=settings, data_dir=tmp_path, log_dir=tmp_path, account_config=account)


def test_a_running_bridge_passes_and_the_daemons_link_is_not_disturbed(tmp_path, host):
    broker, rec = make_broker(tmp_path, host)
    check = doctor.check_bigqmt_bridge(doctor_env(tmp_path, host.port))
    assert check.level == doctor.OK, check.detail
    assert check.detail.startswith("桥接策略运行中（版本 1），往返中位 ") and check.detail.endswith("守护进程已连接")
    broker.ping()
    assert broker.reconnects == 0 and rec.anomalies == [] and broker.is_connected()
    broker.close()


def test_an_old_bridge_is_an_error_saying_to_paste_the_file_again(tmp_path, host):
    host.module.BRIDGE_VERSION = "0"
    check = doctor.check_bigqmt_bridge(doctor_env(tmp_path, host.port))
    assert (check.level, check.detail) == (doctor.ERROR, "大QMT 中运行的桥接策略版本为 0，本程序需要 1")
    assert "重新粘贴" in check.hint


def test_no_bridge_and_a_wrong_account_are_errors(tmp_path):
    host = start_host()
    port = host.port
    try:
        wrong = doctor_env(tmp_path, port)
        wrong.account_config.write_text('{"account_id": "8800999999"}', encoding="utf-8")
        check = doctor.check_bigqmt_bridge(wrong)
        assert (check.level, check.detail) == (doctor.ERROR, "桥接策略绑定的资金账号与 account_config.json 不一致")
    finally:
        host.stop()
    check = doctor.check_bigqmt_bridge(doctor_env(tmp_path, port))
    assert check.level == doctor.ERROR and check.detail.startswith(f"127.0.0.1:{port} 上没有可用的桥接策略")


def test_the_check_is_quiet_when_the_bridge_is_not_used(tmp_path):
    check = doctor.check_bigqmt_bridge(doctor_env(tmp_path, 1, BROKER="miniqmt"))
    assert (check.level, check.detail) == (doctor.OK, "未使用大QMT 桥接（BROKER 不是 bigqmt）")
