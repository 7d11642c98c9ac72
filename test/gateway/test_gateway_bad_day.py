"""Issue 30: the bad-day matrix of the protection guarantee (issue 25 §3, test/test_bad_day_matrix.py) with a network
boundary in the middle. The daemon's trading core talks to a RemoteBroker, which talks over loopback to a real
gateway (waitress, signed HTTP, event journal) wrapping the EasyQmtTrader on the same in-process miniQMT counterpart.
Each scenario is the matrix's own function, unchanged, and ends in the same invariant: within PROTECTION_DEADLINE a
sell works at the counterpart, or the right protection failure is raised, or the block is explained; no order
reached the counterpart twice; the books equal the counterpart's."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

import test_bad_day_matrix as matrix
from gateway.auth import AuthPolicy, RequestAuthenticator
from gateway.client import ClientTimings, GatewayCursor, RemoteBroker, Transport
from gateway.event_journal import EventJournal
from gateway.server import GatewayApp, GatewayOptions, GatewayServer, GatewayService
from gateway_support import TOKEN
from persistence.storage import Database
from protection_support import DRAIN_WAIT, LiveRig
from test_easy_qmt_trader import counterpart, env, loopback_only  # noqa: F401 (fixtures)

# the daemon's side: a request answered or given up well within BROKER_CALL_TIMEOUT (2 s in the rig); the event
# long-poll short, so a drop is noticed within a pass
TIMINGS = ClientTimings(request_timeout=1.5, probe_interval=0.2, reconnect_first_delay=0.02, reconnect_max_delay=0.1,
                        connect_timeout=5.0)
OPTIONS = GatewayOptions(order_wait=1.5, link_check_interval=0.05)

# scenarios whose fault lives entirely on one side of the network (in the daemon's process, or only the
# counterpart's) behave as over a direct link; every scenario of the matrix runs here: none pokes the EasyQmtTrader
# in a way a gateway in between cannot carry (the rig keeps that trader as `backend_trader`)
NOT_OVER_GATEWAY: dict[str, str] = {}


class RemoteLiveRig(LiveRig):
    """LiveRig whose daemon side is a RemoteBroker over a gateway (its own journal folder per rig) in front of the
    rig's EasyQmtTrader. `drain` also waits until the daemon has received every event the gateway journaled."""

    opened: list["RemoteLiveRig"] = []

    def _daemon_broker(self, trader):
        folder = self.env.tmp_path / f"gateway-{len(RemoteLiveRig.opened)}"
        RemoteLiveRig.opened.append(self)
        self.service = GatewayService(trader, EventJournal(Database(folder / "gateway.db")), OPTIONS,
                                      backend_name="miniqmt")
        app = GatewayApp(self.service, RequestAuthenticator(AuthPolicy.build(TOKEN, ["127.0.0.1"], 30.0)))
        self.gateway = GatewayServer(app, "127.0.0.1", 0, threads=8).start()
        db = Database(folder / "daemon.db")
        remote = RemoteBroker(Transport(f"http://127.0.0.1:{self.gateway.port}", TOKEN), GatewayCursor(db), TIMINGS)
        remote.owns_db, remote._db = True, db
        remote.connect()
        return remote

    def drain(self) -> None:
        LiveRig.drain(SimpleNamespace(qmt=self.qmt, trader=self.backend_trader))  # the counterpart and the trader
        self.service.check_link()  # a link change of the trader is journaled now, not at the watcher's next look
        self._wait_remote(lambda: self.trader._seq >= self.service.journal.last_seq, DRAIN_WAIT)

    def wait_link(self, timeout: float = 10.0) -> bool:
        """The trader's link is up again, the gateway said so, and the daemon heard it (bounded)."""
        def up() -> bool:
            self.service.check_link()
            return (self.backend_trader.link_state == "connected" and self.backend_trader.is_connected()
                    and self.trader.is_connected())
        return self._wait_remote(up, timeout)

    def _wait_remote(self, predicate, timeout: float) -> bool:
        progress = self.trader._progress  # notified after every long-poll of the daemon's event thread
        with progress:
            return progress.wait_for(predicate, timeout)

    def close(self) -> None:
        self.trader.close()
        self.gateway.stop()


@pytest.fixture
def over_gateway(monkeypatch):
    """Every LiveRig the matrix builds (rig_holding, item 15's restarted daemon) is a RemoteLiveRig."""
    RemoteLiveRig.opened = []
    monkeypatch.setattr(matrix, "LiveRig", RemoteLiveRig)
    yield
    for rig in reversed(RemoteLiveRig.opened):
        rig.close()


def _runs_over_gateway():
    return [param for param in matrix.SCENARIOS if param.id not in NOT_OVER_GATEWAY]


def test_every_scenario_of_the_matrix_runs_over_the_gateway_or_says_why_not():
    ids = [param.id for param in matrix.SCENARIOS]
    assert len(ids) == 15 and set(NOT_OVER_GATEWAY) <= set(ids)
    assert all(reason for reason in NOT_OVER_GATEWAY.values())


@pytest.mark.parametrize("scenario", _runs_over_gateway())
def test_bad_day_path_keeps_the_protection_guarantee_over_the_gateway(scenario, env, counterpart, tmp_path,
                                                                      over_gateway):
    if scenario is matrix.item_14_connection_flood:
        scenario(env, counterpart, tmp_path)
    else:
        scenario(env, counterpart)
    rig = RemoteLiveRig.opened[-1]
    assert isinstance(rig.trader, RemoteBroker) and rig.trader.delivered > 0  # the events did cross the gateway
