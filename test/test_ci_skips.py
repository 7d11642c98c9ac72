"""In CI (CI_NO_SKIPS=1, set by .ci/run) a skip fails unless its reason cannot hold there (issue 21 item 9)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).with_name("conftest.py")
SAMPLE = '''
import pytest

def test_needs_a_missing_package():
    pytest.importorskip("no_such_package_for_this_test")

@pytest.mark.skipif(True, reason="on Windows --live may find a real miniQMT")
def test_windows_only_reason():
    pass
'''


def run(folder: Path, ci: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "CI_NO_SKIPS": "1" if ci else "0"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfs", str(folder)],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=60)


def test_a_skip_fails_in_ci_unless_its_reason_cannot_hold_there(tmp_path):
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_sample.py").write_text(SAMPLE, encoding="utf-8")
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    ci = run(tmp_path, ci=True)
    assert "1 failed, 1 skipped" in ci.stdout, ci.stdout
    assert "CI 中不允许跳过测试" in ci.stdout and "no_such_package_for_this_test" in ci.stdout
    local = run(tmp_path, ci=False)
    assert "2 skipped" in local.stdout, local.stdout
