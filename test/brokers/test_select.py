"""Which broker back-end the settings select (issue 29): simulation wins, BROKER names the live one, and an
unusable choice is refused in Chinese before anything is sent."""
from __future__ import annotations

import pytest

from brokers.select import backend_name, connect_live_broker, is_simulation
from core.models import BrokerUnavailable
from persistence.config_store import ConfigStore
from persistence.storage import Database


def _settings(tmp_path, **overrides) -> ConfigStore:
    return ConfigStore(Database(tmp_path / "config.db"), run_overrides=overrides)


def test_simulation_switch_wins_over_the_live_back_end(tmp_path):
    settings = _settings(tmp_path, ENABLE_SIMULATION_MODE=True, BROKER="bigqmt")
    assert is_simulation(settings) and backend_name(settings) == "sim"


def test_broker_sim_means_simulation_even_with_the_seed_switch_off(tmp_path):
    settings = _settings(tmp_path, ENABLE_SIMULATION_MODE=False, BROKER="sim")
    assert is_simulation(settings) and backend_name(settings) == "sim"


def test_live_back_end_is_the_one_broker_names(tmp_path):
    settings = _settings(tmp_path, ENABLE_SIMULATION_MODE=False, BROKER="remote")
    assert not is_simulation(settings) and backend_name(settings) == "remote"


def test_a_back_end_that_cannot_load_is_refused_in_chinese(tmp_path, monkeypatch):
    import brokers.select as select

    monkeypatch.setitem(select.LIVE_BACKENDS, "miniqmt", "no_such_backend_module")
    settings = _settings(tmp_path, ENABLE_SIMULATION_MODE=False, BROKER="miniqmt")
    with pytest.raises(BrokerUnavailable, match="券商接口 miniqmt 无法加载"):
        connect_live_broker(settings, tmp_path)
