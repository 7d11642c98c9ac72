"""build_data_manager with default settings: the synthetic replay, and not a single network attempt, although
`auto` first tries xtquant, whose package __init__ would call the internet on import."""
import importlib.util
import sys
from datetime import datetime

import pytest

from data_manager import build_data_manager
from data_test_support import make_settings, no_network  # noqa: F401 (fixture)
from market.clock import ReplayClock
from core.models import DataUnavailable
from qmt.xtquant_import import xtquant_package


@pytest.fixture
def without_xtquant_modules():
    """Run with no xtquant module imported, as in a fresh process; restore afterwards."""
    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if k == "xtquant" or k.startswith("xtquant.")}
    yield
    for name in [k for k in sys.modules if k == "xtquant" or k.startswith("xtquant.")]:
        del sys.modules[name]
    sys.modules.update(saved)


def test_default_build_is_the_synthetic_replay_without_network(tmp_path, no_network, without_xtquant_modules):
    settings = make_settings(tmp_path)
    assert settings.get("DATA_SOURCE") == "auto" and settings.get("REPLAY_DATA_DIR") == ""
    manager, clock = build_data_manager(settings, tmp_path / "data")
    manager.set_watchlist(["600036.SH"])
    for _ in range(5):
        manager.run_once()
    assert manager.source_name == "synthetic" and manager.source_label.startswith("演示行情")
    assert isinstance(clock, ReplayClock) and manager.get_latest_data("600036").source == "synthetic"
    assert "xtquant.xtdata" not in sys.modules  # auto tried it: its native part is missing here
    assert no_network == []


def test_the_guard_catches_xtquants_own_update_check(no_network, without_xtquant_modules, monkeypatch):
    """Proof that the guard would see xtquant's import-time call: executing its real __init__ tries to
    reach pypi.org (blocked here), while the project's loader registers the package without running it."""
    import requests  # noqa: F401 (xtquant's __init__ needs it; requirements-dev.txt pins it, so no skip)
    for variable in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)  # a loopback proxy must not relay the blocked request
    spec = importlib.util.find_spec("xtquant")
    probe = importlib.util.module_from_spec(importlib.util.spec_from_file_location("xtquant_init_probe", spec.origin))
    probe.__spec__.loader.exec_module(probe)  # what a plain `import xtquant` runs
    assert no_network and all("pypi.org" in attempt for attempt in no_network)
    no_network.clear()

    package = xtquant_package()
    assert sys.modules["xtquant"] is package and package.__version__ == "xtquant_250807"
    assert no_network == []


def test_missing_replay_folder_is_refused_in_chinese(tmp_path, no_network):
    with pytest.raises(DataUnavailable, match="回放数据目录不存在"):
        build_data_manager(make_settings(tmp_path, REPLAY_DATA_DIR=str(tmp_path / "nope")), tmp_path)


def test_invalid_replay_start_date_is_refused_in_chinese(tmp_path, no_network):
    with pytest.raises(DataUnavailable, match="REPLAY_START_DATE 格式错误：「2020/04/03」"):
        build_data_manager(make_settings(tmp_path, REPLAY_START_DATE="2020/04/03"), tmp_path)


def test_invalid_watchlist_codes_are_reported_and_skipped(tmp_path, no_network):
    manager, _ = build_data_manager(make_settings(tmp_path), tmp_path)
    manager.set_watchlist(["600036", "12345", "900901"])
    manager.set_watchlist(["600036", "12345", "900901"])  # the data thread repeats the list every second
    assert manager.watchlist() == ["600036.SH"]
    assert sum("无效的股票代码「12345」" in e for e in manager.status()["recent_errors"]) == 1
    assert sum("不支持的股票代码「900901」" in e for e in manager.status()["recent_errors"]) == 1
    assert manager.get_latest_data("not a code") is None


def test_status_reports_the_replay_position(tmp_path, no_network):
    manager, clock = build_data_manager(make_settings(tmp_path, REPLAY_TICKS_PER_DAY=4), tmp_path)
    manager.set_watchlist(["000001.SZ"])
    assert manager.run_once() == pytest.approx(240.0 / 5)  # REPLAY_SECONDS_PER_DAY over 4 ticks + the close
    status = manager.status()
    assert status["replay_day"] == "2024-04-03" and status["connected"] is True
    assert status["last_quote_time"] == "2024-04-03T09:30:00" and clock.now() == datetime(2024, 4, 3, 9, 30)
