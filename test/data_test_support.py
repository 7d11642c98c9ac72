"""Helpers for the market-data tests: a guard that fails any non-loopback network attempt, settings on a
tmp SQLite file, the shared real-data folder (skipped when absent), and the xtquant.datacenter stand-in."""
from __future__ import annotations

import ipaddress
import socket
import sys
from pathlib import Path

import pytest

from persistence.config_store import ConfigStore
from persistence.storage import Database

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


class NetworkBlocked(OSError):
    """Raised instead of opening a non-loopback connection (an OSError, so libraries see 'network down')."""


def _is_loopback(host) -> bool:
    if host in (None, "", "localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture
def no_network(monkeypatch):
    """Records and refuses every DNS lookup or connect to anything but loopback; the test fails at teardown
    if an attempt was made (a test that provokes one on purpose clears the list after checking it)."""
    attempts: list[str] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo, real_sendto = socket.getaddrinfo, socket.socket.sendto

    def check(host, what):
        if not _is_loopback(host):
            attempts.append(f"{what} {host}")
            raise NetworkBlocked(f"network access to {host} blocked in tests")

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            check(address[0], "connect")
        return real_connect(self, address)

    def connect_ex(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            check(address[0], "connect_ex")
        return real_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        check(host, "getaddrinfo")
        return real_getaddrinfo(host, *args, **kwargs)

    def sendto(self, data, *args):
        address = args[-1]
        if self.family in (socket.AF_INET, socket.AF_INET6):
            check(address[0], "sendto")
        return real_sendto(self, data, *args)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket.socket, "sendto", sendto)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield attempts
    assert attempts == [], f"network access attempted: {attempts}"


@pytest.fixture
def isolated_home(monkeypatch, tmp_path):
    """HOME in tmp, so that mootdx (which creates ~/.mootdx on import) cannot touch the real home."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def make_settings(tmp_path: Path, **overrides) -> ConfigStore:
    return ConfigStore(Database(tmp_path / "settings.db"), run_overrides=overrides)


def shared_data(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real market data not available at {path} (../shared/data is absent on this machine)")
    return path


@pytest.fixture(scope="module")
def xt_stand_in():
    """Install the xtquant.datacenter stand-in and import the real xtdata against it; afterwards remove
    every xtquant module this added, so other test modules start clean."""
    before = {k for k in sys.modules if k == "xtquant" or k.startswith("xtquant.")}
    from stand_ins import xtquant_datacenter

    xtquant_datacenter.install()
    yield xtquant_datacenter
    xtquant_datacenter.reset()
    for name in [k for k in sys.modules if (k == "xtquant" or k.startswith("xtquant.")) and k not in before]:
        del sys.modules[name]
