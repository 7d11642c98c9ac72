"""Conformance back-ends "remote" and "remote_faults" (issue 30): the daemon's gateway.client.RemoteBroker over
loopback HTTP to a real gateway server, which wraps the real easy_qmt_trader.EasyQmtTrader on the simulated miniQMT
counter (the "miniqmt" back-end's venue and fault knobs, built by its own factory): every case runs through the
wire, the gateway's event journal and its remark idempotency. The daemon's side keeps its own trading db (the resume
position lives there); `reopen()` restarts the daemon's process only — the Windows box keeps running.

"remote_faults" adds the network's faults to every case: a proxy between the two cuts every connection (long-polls
mid-stream, requests mid-flight) every CUT_EVERY seconds and delays each chunk by LATENCY each way, and the venue's
`restart()` restarts miniQMT and then the gateway process (its journal kept on disk) with a new trader in it."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from backend_miniqmt import miniqmt_rig
from gateway.client import ClientTimings, GatewayCursor, RemoteBroker, Transport
from gateway.server import GatewayServer, build_gateway
from gateway_support import FaultProxy
from persistence.storage import Database
from rig import Rig, register

TOKEN = "conformance-gateway-token-0123456789"
# short deadlines like the rig's own: the gateway's answer to a stuck send (QMT_SEND_TIMEOUT 1 s) must come back
# within the client's request deadline, itself inside the daemon's BROKER_CALL_TIMEOUT (2 s)
GATEWAY_SETTINGS = {"GATEWAY_LINK_CHECK_INTERVAL": 0.02, "GATEWAY_REQUEST_TIMEOUT": 1.6}
TIMINGS = ClientTimings(request_timeout=1.6, probe_interval=0.2, reconnect_first_delay=0.02, reconnect_max_delay=0.2,
                        connect_timeout=8.0)
CUT_EVERY = 1.0  # seconds between two cuts of every open connection ("remote_faults")
LATENCY = 0.02  # seconds each chunk is held, each way ("remote_faults")


@register("remote")
@contextmanager
def remote_rig(tmp_path: Path) -> Iterator[Rig]:
    with _remote(tmp_path, faults=False) as rig:
        yield rig


@register("remote_faults")
@contextmanager
def remote_faults_rig(tmp_path: Path) -> Iterator[Rig]:
    with _remote(tmp_path, faults=True) as rig:
        yield rig


@contextmanager
def _remote(tmp_path: Path, faults: bool) -> Iterator[Rig]:
    with miniqmt_rig(tmp_path / "windows_box") as box:
        box.settings.update(GATEWAY_SETTINGS, source="test")
        box_side = _Box(box, tmp_path / "gateway")
        proxy: Optional[FaultProxy] = FaultProxy(box_side.server.port) if faults else None
        port = proxy.port if proxy is not None else box_side.server.port
        daemon_db = tmp_path / "trading.db"
        opened: list[tuple[RemoteBroker, Database]] = []
        stop_cuts = threading.Event()

        def connect() -> RemoteBroker:
            db = Database(daemon_db)
            broker = RemoteBroker(Transport(f"http://127.0.0.1:{port}", TOKEN), GatewayCursor(db), TIMINGS)
            opened.append((broker, db))
            broker.connect()
            return broker

        def settle() -> None:
            """The counter's pushes are in the trader and so in the gateway's journal; then the client has them."""
            box.settle()
            rig.broker.wait_delivered(box_side.journal().last_seq, 8.0)

        def wait_link(timeout: float) -> bool:
            if not box.wait_link(timeout):
                return False
            return rig.broker.wait_delivered(box_side.journal().last_seq, timeout)

        def reopen() -> RemoteBroker:
            rig.broker.close()
            rig.broker = connect()
            return rig.broker

        rig = Rig(name="remote_faults" if faults else "remote", broker=connect(), venue=box.venue,
                  settings=box.settings, clock=box.clock, quotes=box.quotes, db_path=daemon_db, settle=settle,
                  wait_link=wait_link, reopen=reopen, on_quote=box.on_quote)
        if proxy is not None:
            box.venue.restart = lambda renumber=True: box_side.restart_box(renumber, proxy)  # the whole box restarts
            threading.Thread(target=_cut_repeatedly, args=(proxy, stop_cuts), name="conformance-cuts",
                             daemon=True).start()
            proxy.latency = LATENCY
        try:
            yield rig
        finally:
            stop_cuts.set()
            for broker, db in opened:
                broker.close()
                db.close()
            if proxy is not None:
                proxy.close()
            box_side.server.stop()


class _Box:
    """The Windows box: the gateway server around the box's current trader, restartable on the same journal."""

    def __init__(self, box: Rig, gateway_dir: Path):
        self.box = box
        self.gateway_dir = gateway_dir
        self.server: GatewayServer = self._serve()

    def journal(self):
        return self.server.app.service.journal

    def restart_box(self, renumber: bool, proxy: FaultProxy) -> None:
        """miniQMT restarts (the trader reconnects and reconciles by itself), then the gateway process restarts: a
        new trader on the same box db and a new gateway on the same journal. (Both at once would also test a fresh
        easy_qmt_trader learning renumbered ids, which it does only from pushes; see the report of issue 30.)"""
        type(self.box.venue).restart(self.box.venue, renumber)
        assert self.box.wait_link(8.0), "the box's trader did not reconnect to the restarted miniQMT"
        self.server.stop()
        self.box.reopen()
        self.server = self._serve()
        proxy.upstream = self.server.port
        proxy.cut()

    def _serve(self) -> GatewayServer:
        return build_gateway(self.box.broker, self.box.settings, self.gateway_dir, token=TOKEN,
                             backend_name="miniqmt", host="127.0.0.1", port=0).start()


def _cut_repeatedly(proxy: FaultProxy, stop: threading.Event) -> None:
    while not stop.wait(CUT_EVERY):
        proxy.cut()
