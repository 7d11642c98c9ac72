"""The supervisor's accounts file: what it accepts, and every refusal as one Chinese line naming the file and
the account (two children on one data dir or one QMT session are refused before anything starts)."""
import json

import pytest

from accounts.config import AccountsFileError, load_accounts


def write(tmp_path, accounts, name="accounts.json"):
    path = tmp_path / name
    path.write_text(json.dumps(accounts, ensure_ascii=False), encoding="utf-8")
    return path


def live_config(tmp_path, name, account_id, qmt_path="D:/国金QMT/userdata_mini"):
    path = tmp_path / name
    path.write_text(json.dumps({"account_id": account_id, "account_type": "STOCK", "qmt_path": qmt_path}),
                    encoding="utf-8")
    return name


def refusal(path) -> str:
    with pytest.raises(AccountsFileError) as info:
        load_accounts(path)
    return str(info.value)


def test_a_valid_file_gives_one_spec_per_account_with_checked_overrides(tmp_path):
    path = write(tmp_path, {"accounts": [
        {"id": "sim1", "name": "模拟一", "overrides": {"STOP_LOSS_RATIO": -0.05, "ENABLE_AUTO_TRADING": True},
         "stock_pool": ["600036.SH"]},
        {"id": "live1", "mode": "live", "account_config": live_config(tmp_path, "acc1.json", "8800001")},
        {"id": "off", "enabled": False, "auto_start": False}]})
    sim, live, off = load_accounts(path)
    assert (sim.id, sim.name, sim.mode, sim.overrides, sim.stock_pool) == (
        "sim1", "模拟一", "simulation", {"STOP_LOSS_RATIO": -0.05, "ENABLE_AUTO_TRADING": True}, ("600036.SH",))
    assert live.is_live and live.account_config == (tmp_path / "acc1.json").resolve() and live.name == "live1"
    assert (off.enabled, off.auto_start) == (False, False)
    assert sim.data_dir(tmp_path / "data") == tmp_path / "data" / "accounts" / "sim1"


@pytest.mark.parametrize("accounts, expected", [
    ([], "至少有一个账户"),
    ([{"id": "Sim 1"}], "id 无效"),
    ([{"id": "all"}], "不能是 all"),
    ([{"id": "a"}, {"id": "a"}], "账户 id a 重复"),
    ([{"id": "a", "mode": "paper"}], "mode 应为 simulation"),
    ([{"id": "a", "overrides": {"STOP_LOSS_RATIO": 0.5}}], "overrides 无效：STOP_LOSS_RATIO"),
    ([{"id": "a", "overrides": {"NO_SUCH_KEY": 1}}], "未知参数 NO_SUCH_KEY"),
    ([{"id": "a", "overrides": {"WEB_PORT": 6000}}], "不能设置 WEB_PORT"),
    ([{"id": "a", "mode": "live"}], "必须指定 account_config"),
    ([{"id": "a", "mode": "live", "account_config": "missing.json"}], "account_config 文件不存在"),
    ([{"id": "a", "colour": "red"}], "未知字段：colour"),
    ([{"id": "a", "enabled": "yes"}], "enabled 应为 true 或 false"),
])
def test_each_bad_file_is_refused_with_a_chinese_reason(tmp_path, accounts, expected):
    message = refusal(write(tmp_path, {"accounts": accounts}))
    assert expected in message and "accounts.json" in message


def test_two_live_accounts_on_one_qmt_session_are_refused(tmp_path):
    path = write(tmp_path, [
        {"id": "live1", "mode": "live", "account_config": live_config(tmp_path, "a.json", "8800001")},
        {"id": "live2", "mode": "live", "account_config": live_config(tmp_path, "b.json", "8800001",
                                                                      "d:/国金QMT/userdata_mini")}])
    assert "live1 和 live2 使用同一个 miniQMT 资金账号和路径" in refusal(path)
    other = write(tmp_path, [
        {"id": "live1", "mode": "live", "account_config": live_config(tmp_path, "a.json", "8800001")},
        {"id": "live2", "mode": "live", "account_config": live_config(tmp_path, "c.json", "8800002")}], "ok.json")
    assert [s.id for s in load_accounts(other)] == ["live1", "live2"]


def test_unreadable_files_are_refused(tmp_path):
    assert "找不到账户文件" in refusal(tmp_path / "none.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{\"accounts\": [", encoding="utf-8")
    assert "不是有效的 JSON（第 1 行" in refusal(broken)
