"""Stand-in for the Windows-only native module `xtquant.datacenter`, so that the REAL xtdata.py /
xtdatacenter.py / xtconn.py run in tests against a simulated miniQMT data service (no sockets at all).

It implements only what xtquant 250807's Python layer calls on the paths the project uses (connect, ticks,
whole-quote subscription, instrument details, history download, get_market_data_ex 'v4'); any other native
call fails with AttributeError instead of passing by luck. Install with `install()`, drive with `SERVICE`."""
from __future__ import annotations

import json
import queue
import sys
import threading
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

MODULE_NAME = "xtquant.datacenter"


@dataclass
class MiniQmtService:
    """What a running miniQMT would answer. Bars live on the 'server' until downloaded into local data,
    as with the real service: get_market_data_ex reads local data only."""

    running: bool = True
    ticks: dict[str, dict] = field(default_factory=dict)
    instruments: dict[str, dict] = field(default_factory=dict)
    server_bars: dict[str, list[dict]] = field(default_factory=dict)  # code -> [{time(ms), open, ..., volume(lots)}]
    local_bars: dict[str, list[dict]] = field(default_factory=dict)
    calls: list[tuple] = field(default_factory=list)
    trading_days_ms: list[int] = field(default_factory=list)  # for get_trading_dates_by_market
    holidays: list[int] = field(default_factory=list)  # YYYYMMDD, for get_holidays
    subscriptions: dict[int, tuple[list[str], Callable]] = field(default_factory=dict)
    connected_clients: int = 0
    # faults (issue 13)
    generation: int = 0  # bumped by restart(): clients of an older generation are disconnected
    download_version: Optional[int] = None  # reported by getapiversion: real xtdata then uses download_history_data2
    download_hang: set = field(default_factory=set)  # codes whose download_history_data2 never finishes
    download_fail: dict = field(default_factory=dict)  # code -> message: download_history_data2 fails
    _next_seq: int = 1
    _pushes: "queue.Queue[Optional[tuple[Callable, dict]]]" = field(default_factory=queue.Queue)
    _pusher: Optional[threading.Thread] = None

    def push(self, code: str, tick: dict) -> int:
        """Deliver a tick to every subscription covering `code`, from the service's own thread (like the
        native push thread). Returns how many callbacks were queued."""
        self.ticks[code] = tick
        targets = [cb for codes, cb in list(self.subscriptions.values()) if code in codes or code[-2:] in codes]
        self._ensure_pusher()
        for callback in targets:
            self._pushes.put((callback, {code: dict(tick)}))
        return len(targets)

    def suspend(self, code: str, status: int = 20) -> None:
        """`code` stops trading (停牌; 20 暂停交易至闭市, 17 临时停牌): its tick keeps the last price and time and
        carries the security status in `openInt`, as xtdata reports it for a stock; nothing is pushed for it."""
        self.ticks[code] = {**self.ticks.get(code, {}), "openInt": status}

    def restart(self) -> None:
        """miniQMT restarts between polls: every client is disconnected and every subscription is gone;
        xtdata's get_client() reconnects silently on the next call."""
        self.generation += 1
        self.subscriptions.clear()

    def stop(self) -> None:
        if self._pusher is not None:
            self._pushes.put(None)
            self._pusher.join(timeout=5)
            self._pusher = None

    def _ensure_pusher(self) -> None:
        if self._pusher is None:
            self._pusher = threading.Thread(target=self._push_loop, name="fake-xtdata-push", daemon=True)
            self._pusher.start()

    def _push_loop(self) -> None:
        while True:
            item = self._pushes.get()
            if item is None:
                return
            callback, datas = item
            callback(datas)

    def subscribe(self, codes: list[str], callback: Optional[Callable]) -> int:
        seq = self._next_seq
        self._next_seq += 1
        self.subscriptions[seq] = (list(codes), callback)
        return seq


SERVICE = MiniQmtService()
_create_nparray: list[Callable] = []


def reset() -> MiniQmtService:
    """A fresh service for the next test (the old push thread is stopped)."""
    global SERVICE
    SERVICE.stop()
    SERVICE = MiniQmtService()
    return SERVICE


def install() -> types.ModuleType:
    """Put this module into sys.modules as `xtquant.datacenter` (before xtdata is imported)."""
    module = sys.modules[__name__]
    sys.modules[MODULE_NAME] = module
    return module


# ---- module-level native functions used by xtdatacenter.py at import --------------------------------

def rpc_init(config_dir: str) -> int:
    return 0


def get_local_server_port() -> int:
    return 0  # no embedded datacenter: xtconn falls back to 127.0.0.1:58610 (handled below, no socket)


def register_create_nparray(function: Callable) -> None:
    _create_nparray.append(function)


# ---- the client -----------------------------------------------------------------------------------------

class IPythonApiClient:
    """One connection of xtdata to the (simulated) service."""

    def __init__(self):
        self._address = ""
        self._connected = False
        self._generation = SERVICE.generation

    def init(self) -> None:
        SERVICE.calls.append(("init",))

    def load_config(self, path: str, section: str) -> int:
        SERVICE.calls.append(("load_config", section))
        return 0

    def set_config_addr(self, address: str) -> None:
        self._address = address

    def connect(self) -> tuple[int, str]:
        SERVICE.calls.append(("connect", self._address))
        if not SERVICE.running or not self._address.startswith(("127.0.0.1:", "localhost:")):
            return -1, "connection refused"
        self._connected = True
        self._generation = SERVICE.generation
        SERVICE.connected_clients += 1
        return 0, ""

    def is_connected(self) -> bool:
        return self._connected and SERVICE.running and self._generation == SERVICE.generation

    def shutdown(self) -> None:
        self._connected = False

    def get_data_dir(self) -> str:
        return "/nonexistent/userdata_mini/datadir"

    def get_app_dir(self) -> str:
        return "/nonexistent/userdata_mini"

    def commonControl(self, function: str, payload: bytes) -> bytes:  # noqa: N802 (native name)
        SERVICE.calls.append(("commonControl", function))
        if function == "downloadholidaydata" and SERVICE.holidays:
            return sys.modules["xtquant.xtbson"].BSON.encode({})
        if function == "getapiversion" and SERVICE.download_version is not None:
            return sys.modules["xtquant.xtbson"].BSON.encode({"downloadversion": SERVICE.download_version})
        raise RuntimeError(f"commonControl({function}) not supported by the stand-in")

    def get_trading_dates_by_market(self, market: str, start_time: str, end_time: str, count: int) -> list[int]:
        self._require()
        return list(SERVICE.trading_days_ms)

    def get_holidays(self) -> list[int]:
        self._require()
        return list(SERVICE.holidays)

    # ---- quotes
    def get_full_tick(self, code_list: list[str]) -> str:
        self._require()
        SERVICE.calls.append(("get_full_tick", tuple(code_list)))
        return json.dumps({c: SERVICE.ticks[c] for c in code_list if c in SERVICE.ticks})

    def subscribe_whole_quote(self, code_list: list[str], param: bytes, callback: Optional[Callable]) -> int:
        self._require()
        SERVICE.calls.append(("subscribe_whole_quote", tuple(code_list)))
        return SERVICE.subscribe(code_list, callback)

    def unsubscribe_quote(self, seq: int) -> bool:
        SERVICE.calls.append(("unsubscribe_quote", seq))
        return SERVICE.subscriptions.pop(seq, None) is not None

    def get_instrument_detail(self, code: str) -> Optional[bytes]:
        from xtquant import xtbson

        self._require()
        detail = SERVICE.instruments.get(code)
        return xtbson.encode(detail) if detail else None

    # ---- bars
    def supply_history_data(self, code: str, period: str, start_time: str, end_time: str) -> None:
        self._require()
        SERVICE.calls.append(("supply_history_data", code, period, start_time, end_time))
        rows = [r for r in SERVICE.server_bars.get(code, []) if _in_range(r["time"], start_time, end_time)]
        merged = {r["time"]: r for r in SERVICE.local_bars.get(code, [])}
        merged.update({r["time"]: r for r in rows})
        SERVICE.local_bars[code] = [merged[t] for t in sorted(merged)]

    def supply_history_data2(self, stock_list, period: str, start_time: str, end_time: str, param: bytes,
                             on_progress: Callable) -> int:
        """The download API of newer clients: returns at once (0), progress arrives from another thread.
        A code in `download_hang` never reports (xtdata then waits for ever); `download_fail` reports an error."""
        self._require()
        codes = list(stock_list)
        SERVICE.calls.append(("supply_history_data2", tuple(codes), period, start_time, end_time))

        def work() -> None:
            if any(code in SERVICE.download_hang for code in codes):
                return
            failed = [SERVICE.download_fail[c] for c in codes if c in SERVICE.download_fail]
            if failed:
                on_progress({"finished": 0, "total": -1, "stockcode": codes[0], "message": failed[0]})
                return
            for code in codes:
                self.supply_history_data(code, period, start_time, end_time)
            on_progress({"finished": len(codes), "total": len(codes), "stockcode": codes[-1], "message": ""})

        threading.Thread(target=work, name="fake-xtdata-download", daemon=True).start()
        return 0

    def get_market_data3(self, field_list, stock_list, period, start_time, end_time, count, dividend_type, fill_data,
                         version, enable_read_from_local, enable_read_from_server, debug_mode, data_dir) -> list:
        self._require()
        SERVICE.calls.append(("get_market_data3", tuple(stock_list), period, start_time, end_time, count,
                              dividend_type, version))
        if version != "v4" or period != "1d":
            raise RuntimeError(f"stand-in only serves 1d bars in the v4 layout, asked {period!r} {version!r}")
        fields = list(field_list) or ["time", "open", "high", "low", "close", "volume"]
        result = []
        for code in stock_list:
            rows = [r for r in SERVICE.local_bars.get(code, []) if _in_range(r["time"], start_time, end_time)]
            if count and count > 0:
                rows = rows[-count:]
            index = [_day_text(r["time"]) for r in rows]
            columns = []
            for name in fields:
                dtype = "<i8" if name == "time" else "<f8"
                columns.append((name, dtype, np.asarray([r[name] for r in rows], dtype=dtype).tobytes()))
            result.append((code, index, columns))
        return result

    def _require(self) -> None:
        if not self.is_connected():
            raise RuntimeError("not connected")


def _day_text(milliseconds: int) -> str:
    import datetime as dt

    moment = dt.datetime.fromtimestamp(milliseconds / 1000, dt.timezone(dt.timedelta(hours=8)))
    return moment.strftime("%Y%m%d")


def _in_range(milliseconds: int, start_time: Any, end_time: Any) -> bool:
    day = _day_text(milliseconds)
    if start_time and day < str(start_time)[:8]:
        return False
    if end_time and day > str(end_time)[:8]:
        return False
    return True
