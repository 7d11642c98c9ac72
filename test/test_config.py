"""Parameter metadata, validation and the persisted runtime override layer."""
import sqlite3

import pytest

import config
from persistence.config_store import ConfigError, ConfigStore
from persistence.storage import Database


def open_store(path, **kwargs):
    return ConfigStore(Database(path), **kwargs)


def test_every_param_has_default_type_meaning_and_group():
    for p in config.PARAMS:
        assert p.meaning and p.group and p.kind
        assert config.coerce_value(p, p.default) == p.default or p.kind == "rate_table"
    assert config.validate(config.DEFAULTS).ok


def test_defaults_raise_no_warnings():
    assert config.validate(config.DEFAULTS).warnings == []


@pytest.mark.parametrize("key, value, fragment", [
    ("STOP_LOSS_RATIO", 0.05, "超出范围"),
    ("STOP_LOSS_RATIO", "abc", "必须是数字"),
    ("POSITION_UNIT", -5, "超出范围"),
    ("MAX_ORDERS_PER_DAY", 1.5, "必须是整数"),
    ("ENABLE_AUTO_TRADING", "yes", "布尔"),
    ("DATA_SOURCE", "yahoo", "只能取"),
    ("DYNAMIC_TAKE_PROFIT", [(0.10, 0.93), (0.05, 0.96)], "升序"),
    ("DYNAMIC_TAKE_PROFIT", [(0.05, 1.2)], "0 和 1"),
    ("BUY_GRID_LEVELS", [0.88, 0.93], "降序"),
    ("WEB_PORT", 70000, "超出范围"),
])
def test_invalid_values_are_refused_with_chinese_message(key, value, fragment):
    result = config.validate({**config.DEFAULTS, key: value})
    assert not result.ok
    assert fragment in result.errors[key]


def test_stop_loss_of_zero_or_more_is_refused():
    result = config.validate({**config.DEFAULTS, "STOP_LOSS_RATIO": 0.0})
    assert "STOP_LOSS_RATIO" in result.errors


def test_warning_for_add_level_the_stop_loss_makes_unreachable():
    result = config.validate({**config.DEFAULTS, "BUY_GRID_LEVELS": [1.0, 0.93, 0.80], "STOP_LOSS_RATIO": -0.05})
    assert result.ok
    assert any("不可达" in w for w in result.warnings)


def test_warning_when_position_cap_leaves_a_level_without_budget():
    result = config.validate({**config.DEFAULTS, "MAX_POSITION_VALUE": 40000.0})
    assert any("已用完" in w for w in result.warnings)


def test_refused_update_changes_nothing(tmp_path):
    store = open_store(tmp_path / "t.db")
    with pytest.raises(ConfigError) as info:
        store.update({"STOP_LOSS_RATIO": 0.2, "POSITION_UNIT": 30000.0})
    assert "STOP_LOSS_RATIO" in info.value.errors
    assert store.get("POSITION_UNIT") == 20000.0
    assert store.history() == []
    with pytest.raises(ConfigError) as info:
        store.update({"POSITION_UNIT": "many"})
    assert "必须是数字" in info.value.errors["POSITION_UNIT"]
    assert store.overridden() == {}


def test_unknown_key_is_refused(tmp_path):
    store = open_store(tmp_path / "t.db")
    with pytest.raises(ConfigError) as info:
        store.update({"NO_SUCH_KEY": 1})
    assert "未知参数" in info.value.errors["NO_SUCH_KEY"]


def test_override_survives_restart_and_rollback_restores(tmp_path):
    path = tmp_path / "t.db"
    store = open_store(path)
    seen = []
    store.subscribe(seen.append)
    store.update({"STOP_LOSS_RATIO": -0.08}, source="web")
    store.update({"STOP_LOSS_RATIO": -0.07}, source="web")
    assert seen == [{"STOP_LOSS_RATIO": -0.08}, {"STOP_LOSS_RATIO": -0.07}]

    reopened = open_store(path)
    assert reopened.get("STOP_LOSS_RATIO") == -0.07
    assert reopened.overridden() == {"STOP_LOSS_RATIO": -0.07}
    assert any("STOP_LOSS_RATIO" in line for line in reopened.startup_report())

    reopened.rollback()
    assert reopened.get("STOP_LOSS_RATIO") == -0.08
    history = reopened.history()
    assert [(h["key"], h["old_value"], h["new_value"], h["source"]) for h in reversed(history)] == [
        ("STOP_LOSS_RATIO", -0.095, -0.08, "web"),
        ("STOP_LOSS_RATIO", -0.08, -0.07, "web"),
        ("STOP_LOSS_RATIO", -0.07, -0.08, "rollback"),
    ]
    first_change = history[-1]["id"]
    reopened.rollback(first_change)
    assert reopened.get("STOP_LOSS_RATIO") == -0.095
    assert reopened.overridden() == {}
    assert open_store(path).get("STOP_LOSS_RATIO") == -0.095


def test_reset_returns_to_config_py_value(tmp_path):
    store = open_store(tmp_path / "t.db")
    store.update({"ENABLE_AUTO_TRADING": True})
    store.reset("ENABLE_AUTO_TRADING")
    assert store.get("ENABLE_AUTO_TRADING") is False
    assert store.history()[0]["new_value"] is False


def test_corrupted_stored_value_is_ignored_with_warning(tmp_path):
    path = tmp_path / "t.db"
    open_store(path).update({"POSITION_UNIT": 30000.0})
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE system_config SET value='{broken' WHERE key='POSITION_UNIT'")
        conn.execute("INSERT INTO system_config VALUES('STOP_LOSS_RATIO', '0.5', 'x', 'web')")
    store = open_store(path)
    assert store.get("POSITION_UNIT") == 20000.0
    assert store.get("STOP_LOSS_RATIO") == -0.095
    assert len(store.load_warnings) == 2


def test_run_overrides_win_but_are_not_persisted(tmp_path):
    path = tmp_path / "t.db"
    store = open_store(path, run_overrides={"WEB_PORT": 5123})
    assert store.get("WEB_PORT") == 5123
    assert open_store(path).get("WEB_PORT") == 5000


def test_secret_is_masked_everywhere(tmp_path):
    store = open_store(tmp_path / "t.db")
    store.update({"WEB_API_TOKEN": "supersecret-token"})
    assert store.overridden()["WEB_API_TOKEN"] == "******"
    assert store.history()[0]["new_value"] == "******"
    row = next(r for r in store.describe() if r["key"] == "WEB_API_TOKEN")
    assert row["value"] == "******"
    assert store.get("WEB_API_TOKEN") == "supersecret-token"


def test_invalid_config_py_defaults_are_refused(tmp_path):
    with pytest.raises(ConfigError):
        open_store(tmp_path / "t.db", defaults={**config.DEFAULTS, "STOP_LOSS_RATIO": 0.1})


def test_unknown_or_invalid_run_override_is_refused(tmp_path):
    with pytest.raises(ConfigError) as info:
        open_store(tmp_path / "t.db", run_overrides={"NO_SUCH": 1, "WEB_PORT": "x"})
    assert set(info.value.errors) == {"NO_SUCH", "WEB_PORT"}


def test_a_web_change_to_a_command_line_key_is_refused_with_that_reason(tmp_path):
    from persistence.config_store import RUN_OVERRIDE_NOTE, RunOverrideRefused

    path = tmp_path / "t.db"
    store = open_store(path, run_overrides={"ENABLE_AUTO_TRADING": True})
    described = {p["key"]: p for p in store.describe()}
    assert described["ENABLE_AUTO_TRADING"]["run_override"] is True
    assert described["ENABLE_AUTO_TRADING"]["run_override_note"] == RUN_OVERRIDE_NOTE == "本次运行由命令行指定"
    assert described["STOP_LOSS_RATIO"]["run_override"] is False
    with pytest.raises(RunOverrideRefused) as refused:
        store.update({"ENABLE_AUTO_TRADING": False, "STOP_LOSS_RATIO": -0.08})
    assert "ENABLE_AUTO_TRADING 本次运行由命令行指定（True）" in refused.value.errors["ENABLE_AUTO_TRADING"]
    assert store.get("ENABLE_AUTO_TRADING") is True and store.get("STOP_LOSS_RATIO") == -0.095, "nothing changed"
    assert store.history() == []
    store.update({"STOP_LOSS_RATIO": -0.08})
    assert store.get("STOP_LOSS_RATIO") == -0.08
    assert open_store(path).history()[0]["key"] == "STOP_LOSS_RATIO"
