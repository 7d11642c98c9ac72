"""Market data through mootdx: daily bars read offline from a TDX install (TDX_DIR), and quotes from the one
TDX server named in MOOTDX_SERVER, only when it is set. mootdx's public-server probe (bestip) never runs."""
from __future__ import annotations

import copy
import json
import logging
import math
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Optional, Sequence

import market_rules
from market.bar_store import BarStore
from core.models import DataUnavailable, Quote
from market.replay_feeds import open_tdx_reader, read_tdx_daily
from market.source_base import Publish, SourceStep, idle_wait

log = logging.getLogger(__name__)

TDX_VOLUME_UNIT = 100  # TDX quotes report volume in lots
CONFIG_FILE_NAME = "mootdx_config.json"


def parse_server(text: str) -> tuple[str, int]:
    """'ip:port' → (ip, port); ValueError in Chinese otherwise (mootdx wants a literal IP address)."""
    import ipaddress

    host, _, port = text.strip().rpartition(":")
    try:
        ipaddress.ip_address(host)
        number = int(port)
        if not 0 < number < 65536:
            raise ValueError(port)
    except ValueError:
        raise ValueError(f"MOOTDX_SERVER 格式错误：「{text}」，应为 IP:端口，例如 127.0.0.1:7709") from None
    return host, number


def open_quotes(server: tuple[str, int], timeout: float, config_dir: Path):
    """mootdx StdQuotes on exactly `server`. mootdx's config.setup() runs bestip (a probe of public servers)
    whenever ~/.mootdx/config.json is missing, so the config is pointed at our own file that names `server`."""
    import mootdx.config as mootdx_config
    from mootdx.quotes import Quotes

    config_path = Path(config_dir) / CONFIG_FILE_NAME
    config_path.parent.mkdir(parents=True, exist_ok=True)
    settings = copy.deepcopy(mootdx_config.settings)
    settings["BESTIP"] = {"HQ": list(server), "EX": "", "GP": ""}
    config_path.write_text(json.dumps(settings, ensure_ascii=False), encoding="utf-8")
    mootdx_config.CONF = str(config_path)
    try:
        return Quotes.factory(market="std", server=server, bestip=False, timeout=timeout, raise_exception=True,
                              auto_retry=False, heartbeat=False)
    except Exception as exc:  # tdxpy raises its own connection errors
        raise DataUnavailable("MOOTDX_CONNECT_FAILED",
                              f"无法连接 mootdx 行情服务器 {server[0]}:{server[1]}：{exc or type(exc).__name__}") from exc


class MootdxSource:
    name = "mootdx"
    label = "通达信行情（mootdx）"

    def __init__(self, settings, clock, bar_store: BarStore, data_dir: Path):
        self._settings = settings
        self._clock = clock
        self._bars = bar_store
        self._data_dir = Path(data_dir)
        self._reader = None
        self._client = None
        self._server: Optional[tuple[str, int]] = None
        self._names: dict[str, str] = {}  # code → name from the server's security list (ST limits)
        self._watch: list[str] = []
        self._next_bar_update: Optional[datetime] = None
        self._read_stamps: dict[str, tuple] = {}  # code -> (.day file stamp, complete day) of the last read
        self._publish: Optional[Publish] = None
        self.connected = False

    def start(self, publish: Publish) -> None:
        self._publish = publish
        tdx_dir = str(self._settings.get("TDX_DIR") or "")
        server_text = str(self._settings.get("MOOTDX_SERVER") or "")
        if not tdx_dir and not server_text:
            raise DataUnavailable("MOOTDX_NOT_CONFIGURED",
                                  "mootdx 需要 TDX_DIR（离线日线）或 MOOTDX_SERVER（在线行情），两者都未配置")
        if tdx_dir:
            self._reader = open_tdx_reader(Path(tdx_dir))
        if server_text:
            try:
                self._server = parse_server(server_text)
            except ValueError as exc:
                raise DataUnavailable("MOOTDX_SERVER_INVALID", str(exc)) from exc
            self._open_client()
        self.connected = True

    def _open_client(self) -> None:
        """A fresh quotes client (mootdx's own retry is off: a dead client is dropped and replaced here),
        and the names of the securities once, for the ST price limits (issue 13)."""
        self._client = open_quotes(self._server, float(self._settings.get("MOOTDX_TIMEOUT")), self._data_dir)
        if not self._names:
            self._names = security_names(self._client)

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        try:
            client.close()
        except Exception:  # already broken; a new client replaces it
            log.debug("关闭失效的 mootdx 连接出错", exc_info=True)

    def set_watchlist(self, codes: Sequence[str]) -> None:
        watch = list(dict.fromkeys(codes))
        if watch != self._watch:
            self._watch = watch
            self._next_bar_update = None  # new codes want their bars now

    def stock_name(self, code: str) -> str:
        return self._names.get(code, "")  # from the server's security list; TDX quotes carry no names

    def run_once(self) -> SourceStep:
        step = SourceStep(wait=idle_wait(self._settings, self._clock))
        if self._reader is None and self._client is None:  # start failed (server down): try again
            try:
                self.start(self._publish)
            except DataUnavailable as exc:
                step.errors.append(exc.message)
                return step
        watch = list(self._watch)
        if self._client is None and self._server is not None:  # the last client died: a new connection
            try:
                self._open_client()
                log.info("已重新连接 mootdx 行情服务器 %s:%s", *self._server)
            except DataUnavailable as exc:
                step.errors.append(exc.message)
        if self._client is not None and watch:
            try:
                step.quotes = self._poll(watch, step.errors)
                self.connected = True
            except Exception as exc:  # tdxpy raises on a dropped connection (raise_exception=True)
                self.connected = False
                self._drop_client()  # never reuse a dead client: the next step connects again
                step.errors.append(f"mootdx 行情获取失败：{exc or type(exc).__name__}，下次重新连接")
        elif self._server is None and watch:
            step.errors.append("未配置 MOOTDX_SERVER，mootdx 只有离线日线，没有实时行情")
        if self._reader is not None and self._bars_due():
            self._update_bars(watch, step)
        return step

    def close(self) -> None:
        if self._client is not None:
            self._drop_client()
        self.connected = False

    def _poll(self, watch: list[str], errors: list[str]) -> list[Quote]:
        frame = self._client.quotes(symbol=[c[:6] for c in watch])
        if frame is None or frame.empty:
            errors.append("mootdx 行情服务器返回空数据")
            return []
        by_digits = {c[:6]: c for c in watch}
        quotes = []
        for row in frame.to_dict("records"):
            code = by_digits.get(str(row.get("code")))
            if code is None:
                continue
            try:
                quotes.append(row_to_quote(code, row, self._clock.now(), self.name, self._names.get(code, "")))
            except DataUnavailable as exc:
                errors.append(exc.message)
        return quotes

    def _bars_due(self) -> bool:
        return self._next_bar_update is None or self._clock.now() >= self._next_bar_update

    def _update_bars(self, watch: list[str], step: SourceStep) -> None:
        self._next_bar_update = self._clock.now() + timedelta(seconds=float(self._settings.get("UPDATE_INTERVAL")))
        complete = self._last_complete_day()
        for code in watch:
            last = self._bars.last_date(code)
            if last is not None and last >= complete:
                continue  # up to date: re-reading the whole .day file could not add anything
            stamp = (self._file_stamp(code), complete)
            if stamp[0] is not None and self._read_stamps.get(code) == stamp:
                continue  # the same file read for the same complete day: nothing new (e.g. a suspended stock)
            self._read_stamps[code] = stamp
            bars = [b for b in read_tdx_daily(self._reader, code) if b.day <= complete and (last is None or b.day > last)]
            if not bars and last is None:
                step.errors.append(f"通达信目录中没有 {code} 的日线")
            step.bars.extend(bars)

    def _file_stamp(self, code: str) -> Optional[tuple[int, int]]:
        """(mtime, size) of the code's .day file, None when there is none."""
        path = self._reader.find_path(symbol=code[:6], subdir="lday", suffix="day")
        if path is None:
            return None
        stat = Path(path).stat()
        return stat.st_mtime_ns, stat.st_size

    def _last_complete_day(self) -> date:
        """The last trading day whose bar is final: today after the close, else the previous trading day."""
        now = self._clock.now()
        if self._clock.is_trading_day(now.date()) and now.time() >= market_rules.MARKET_CLOSE:
            return now.date()
        return self._clock.calendar.previous_trading_day(now.date())


def security_names(client) -> dict[str, str]:
    """code → name of both markets from the server's security list; {} when the server cannot tell (the ST
    limit is then unknown: a warning, and the normal limit is used)."""
    names: dict[str, str] = {}
    for market, suffix in ((0, ".SZ"), (1, ".SH")):
        try:
            frame = client.stocks(market=market)
        except Exception as exc:  # optional information: quotes work without it
            log.warning("mootdx 证券名称列表获取失败（ST 股票的涨跌停幅度将无法识别）：%s", exc)
            return names
        if frame is None or getattr(frame, "empty", True):
            continue
        for row in frame.to_dict("records"):
            names[f"{str(row.get('code')).zfill(6)}{suffix}"] = str(row.get("name") or "").strip()
    return names


def row_to_quote(code: str, row: dict, received: datetime, source: str, name: str = "") -> Quote:
    """A Quote from one row of mootdx `quotes()` (tdxpy get_security_quotes fields). TDX's own time field is
    an undocumented encoding, so the quote is stamped with the time it was received. `name` carries the ST
    flag ("ST"/"*ST"): those take the main-board ST band of the day (market_rules.StLimitRule)."""
    price, prev_close = _number(row.get("price")), _number(row.get("last_close"))
    if not price or price <= 0:
        raise DataUnavailable("BAD_TICK", f"mootdx 行情 {code} 的现价无效（{row.get('price')}），未采用")
    if not prev_close or prev_close <= 0:
        raise DataUnavailable("BAD_TICK", f"mootdx 行情 {code} 的昨收价无效（{row.get('last_close')}），未采用")
    tick = lambda key: _on_tick(code, row.get(key))  # noqa: E731  (tdxpy multiplies by 0.01: 13.750000000000002)
    prev_close = tick("last_close")
    limit_down, limit_up = market_rules.price_limits(code, prev_close, market_rules.is_st_name(name), received.date())
    volume = _number(row.get("vol"))
    return Quote(code=code, price=tick("price"), prev_close=prev_close, time=received, source=source,
                 limit_up=limit_up, limit_down=limit_down, open=tick("open"), high=tick("high"), low=tick("low"),
                 volume=volume * TDX_VOLUME_UNIT if volume is not None else None, bid1=tick("bid1"), ask1=tick("ask1"),
                 name=name)


def _number(value) -> Optional[float]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) or math.isinf(number) else number


def _on_tick(code: str, value) -> Optional[float]:
    number = _number(value)
    return market_rules.round_price(code, number) if number and number > 0 else None
