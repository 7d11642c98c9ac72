"""Security helpers of the web server: the API token file, the Host check (DNS rebinding), loopback
detection. The same checks are exercised end to end against the running server in test_web_api.py."""
import os
import stat

import pytest

from persistence.config_store import ConfigStore
from persistence.storage import Database
from web_server import Binding, host_header_allowed, is_loopback_address, load_or_create_token


@pytest.fixture
def settings(tmp_path):
    return ConfigStore(Database(tmp_path / "config.db"))


def test_token_is_generated_once_with_mode_0600_and_reused(tmp_path, settings, monkeypatch):
    monkeypatch.delenv("QMT_API_TOKEN", raising=False)
    token = load_or_create_token(tmp_path / "data", settings)
    path = tmp_path / "data" / "api_token"
    assert len(token) >= 40
    assert path.read_text(encoding="utf-8").strip() == token
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_token(tmp_path / "data", settings) == token


def test_loosened_token_file_is_tightened(tmp_path, settings, monkeypatch):
    monkeypatch.delenv("QMT_API_TOKEN", raising=False)
    token = load_or_create_token(tmp_path, settings)
    path = tmp_path / "api_token"
    os.chmod(path, 0o644)
    assert load_or_create_token(tmp_path, settings) == token
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_configured_token_wins_then_environment(tmp_path, settings, monkeypatch):
    monkeypatch.setenv("QMT_API_TOKEN", "from-the-environment-123")
    assert load_or_create_token(tmp_path, settings) == "from-the-environment-123"
    settings.update({"WEB_API_TOKEN": "configured-token-abcdefgh"})
    assert load_or_create_token(tmp_path, settings) == "configured-token-abcdefgh"
    assert not (tmp_path / "api_token").exists()


def test_short_token_is_refused(tmp_path, settings, monkeypatch):
    monkeypatch.setenv("QMT_API_TOKEN", "short")
    with pytest.raises(ValueError, match="太短"):
        load_or_create_token(tmp_path, settings)


def test_empty_token_file_is_replaced(tmp_path, settings, monkeypatch):
    monkeypatch.delenv("QMT_API_TOKEN", raising=False)
    (tmp_path / "api_token").write_text("")
    token = load_or_create_token(tmp_path, settings)
    assert (tmp_path / "api_token").read_text().strip() == token and len(token) >= 40


@pytest.mark.parametrize("address, expected", [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("::ffff:127.0.0.1", True), ("192.168.1.5", False), ("0.0.0.0", False), ("example.com", False), ("", False),
    (None, False),
])
def test_loopback_detection(address, expected):
    assert is_loopback_address(address) is expected


LOOPBACK = Binding("127.0.0.1", 5000)


@pytest.mark.parametrize("header, expected", [
    ("127.0.0.1:5000", True), ("localhost:5000", True), ("LOCALHOST:5000", True), ("[::1]:5000", True),
    ("127.0.0.1", False),  # port 80 implied: not this server
    ("127.0.0.1:5001", False), ("evil.example.com:5000", False), ("evil.example.com", False),
    ("127.0.0.1.evil.com:5000", False), ("localhost.:5000", False), ("", False), (None, False),
    ("127.0.0.1:5000:80", False), ("[::1]5000", False), ("[::1:5000", False), ("127.0.0.1:abc", False),
    ("192.168.1.5:5000", False),
])
def test_host_check_on_loopback_binding(header, expected):
    assert host_header_allowed(header, LOOPBACK) is expected


def test_host_check_on_a_named_address_and_a_wildcard():
    lan = Binding("192.168.1.5", 8080)
    assert host_header_allowed("192.168.1.5:8080", lan)
    assert not host_header_allowed("localhost:8080", lan)
    assert not host_header_allowed("evil.example.com:8080", lan)
    wildcard = Binding("0.0.0.0", 8080)  # cannot know its names: the token guards every request instead
    assert host_header_allowed("anything:1", wildcard)
    assert not wildcard.is_loopback and wildcard.is_wildcard
