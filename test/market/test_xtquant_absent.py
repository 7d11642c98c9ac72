"""A default run on a machine without miniQMT (issue 26 item 14): the console says in Chinese that miniQMT is
not available here and replay is used; Python's English import error is never shown."""
from __future__ import annotations

import os
import sys
import types

import pytest

import qmt.xtquant_import as xtquant_import
from daemon_support import start_ready


@pytest.mark.skipif(os.name == "nt", reason="a Windows machine may have miniQMT")
def test_a_default_run_on_linux_says_in_chinese_that_replay_is_used(tmp_path):
    assert not xtquant_import.data_native_available()  # the wheel's .pyd files do not load here
    daemon = start_ready(tmp_path, [])  # no DATA_SOURCE: the default 'auto'
    try:
        assert daemon.api("/api/status")["data_source"]["source"] in ("synthetic", "replay")
    finally:
        daemon.terminate()
    lines = daemon.output(200_000).splitlines()
    note = "本机没有可用的 miniQMT（xtquant 的原生模块只能在安装了 miniQMT 的 Windows 电脑上加载），改用回放行情"
    assert sum(note in line for line in lines) == 1, "\n".join(lines[:5])
    assert not [line for line in lines if "xtquant" in line and ("WARNING" in line or "cannot import" in line)]
    assert not any("import" in line.lower() and "xtquant" in line for line in lines), "\n".join(lines[:5])


def test_a_registered_stand_in_counts_as_available(monkeypatch):
    monkeypatch.setitem(sys.modules, xtquant_import.NATIVE_DATA_MODULE, types.ModuleType("datacenter"))
    assert xtquant_import.data_native_available() is True


def test_the_import_failure_is_said_in_chinese_without_pythons_text():
    if xtquant_import.data_native_available():
        pytest.skip("xtdata loads on this machine")
    with pytest.raises(xtquant_import.DataUnavailable) as refused:
        xtquant_import.import_xtquant("xtdata")
    assert refused.value.message == "本机无法使用 miniQMT 行情：xtquant 的原生模块只能在安装了 miniQMT 的 Windows 电脑上加载"
