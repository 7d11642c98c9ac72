"""`python qmt_gateway.py`: settings (config.py values plus `--set` for this run), the token (configured, or generated
once into `<data dir>/gateway_token`), the wrapped back-end connected with retries, the miniQMT quote feed into the
gateway's board, and the served gateway until Ctrl+C / SIGTERM."""
from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import threading
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import config
from core.models import BrokerUnavailable, DataUnavailable
from gateway.server import GatewayServer, GatewayService, build_gateway, connect_backend
from persistence.config_store import parse_set_items

log = logging.getLogger("qmt_gateway")

TOKEN_FILE_NAME = "gateway_token"
CONNECT_RETRY_FIRST, CONNECT_RETRY_MAX = 2.0, 60.0  # seconds between attempts to reach QMT at start (doubling)


class GatewaySettings:
    """config.py's values with this run's overrides, validated like the daemon's (ConfigError in Chinese)."""

    def __init__(self, overrides: Optional[Mapping[str, Any]] = None):
        values = dict(config.DEFAULTS)
        values.update(config.coerce_all(overrides or {}))
        result = config.validate(values)
        if not result.ok:
            raise config.ConfigError(result.errors)
        self._values = values

    def get(self, key: str) -> Any:
        return self._values[key]


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="qmt_gateway", description="QMT 远程网关：在 Windows 机器上运行，"
                                     "把 miniQMT（或大QMT桥接）的交易接口、事件流和行情安全地提供给远程的守护进程")
    parser.add_argument("--data-dir", default="gateway_data", help="网关数据目录（事件日志、令牌、券商接口数据），默认 gateway_data")
    parser.add_argument("--log-dir", default="logs", help="日志目录，默认 logs")
    parser.add_argument("--host", help="监听地址（覆盖 GATEWAY_HOST）")
    parser.add_argument("--port", type=int, help="监听端口（覆盖 GATEWAY_PORT）")
    parser.add_argument("--read-only", action="store_true", help="只读模式：只提供查询、行情和事件，拒绝委托和撤单")
    parser.add_argument("--account-config", help="account_config.json 的路径（默认与 qmt_gateway.py 同目录）")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="本次运行覆盖参数（JSON 值）")
    return parser.parse_args(argv)


def run_overrides(args: argparse.Namespace) -> dict:
    overrides = parse_set_items(args.set)
    if args.host:
        overrides["GATEWAY_HOST"] = args.host
    if args.port is not None:
        overrides["GATEWAY_PORT"] = args.port
    if args.read_only:
        overrides["GATEWAY_READ_ONLY"] = True
    return overrides


def load_or_create_token(settings, data_dir: Path) -> str:
    """GATEWAY_TOKEN, else `<data dir>/gateway_token` (created with mode 0600 on first start). ValueError if short."""
    configured = str(settings.get("GATEWAY_TOKEN") or "").strip()
    if configured:
        if len(configured) < config.MIN_API_TOKEN_LENGTH:
            raise ValueError(f"网关令牌太短：至少需要 {config.MIN_API_TOKEN_LENGTH} 个字符")
        return configured
    path = Path(data_dir) / TOKEN_FILE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        existing = path.read_text(encoding="utf-8").strip()
        if len(existing) >= config.MIN_API_TOKEN_LENGTH:
            return existing
        path.unlink()
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    log.info("已生成网关令牌，保存在 %s（仅本用户可读）：把其内容填入守护进程的 BROKER_TOKEN", path)
    return token


class QuotePump:
    """The gateway's quote feed: the miniQMT market source (xtdata), its watchlist = what clients subscribed, every
    quote into the gateway's board (newest wins)."""

    def __init__(self, source, service: GatewayService, stop: threading.Event):
        self._source, self._service, self._stop = source, service, stop
        self._thread = threading.Thread(target=self._run, name="gateway-quotes", daemon=True)

    def start(self) -> None:
        self._source.start(self._service.publish_quote)
        self._thread.start()

    def watch(self, codes: list[str]) -> None:
        self._source.set_watchlist(codes)

    def _run(self) -> None:
        while not self._stop.is_set():
            step = self._source.run_once()
            for quote in step.quotes:
                self._service.publish_quote(quote)
            for error in step.errors:
                log.warning("行情：%s", error)
            self._stop.wait(max(0.1, step.wait))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self._source.close()


def connect_with_retries(settings, data_dir: Path, account_config: Optional[Path], stop: threading.Event):
    """QMT may start after the gateway (a logon task, a service at boot): keep trying until it answers or we stop."""
    delay = CONNECT_RETRY_FIRST
    while not stop.is_set():
        try:
            return connect_backend(settings, data_dir, account_config)
        except BrokerUnavailable as exc:
            log.error("连接券商接口 %s 失败：%s；%.0f 秒后重试", settings.get("GATEWAY_BROKER"), exc.message, delay)
        stop.wait(delay)
        delay = min(delay * 2, CONNECT_RETRY_MAX)
    return None


def start_quotes(settings, data_dir: Path, server: GatewayServer, stop: threading.Event) -> Optional[QuotePump]:
    """miniQMT's own quotes (xtdata); the big-QMT bridge serves orders only (the daemon then uses its own feed)."""
    if settings.get("GATEWAY_BROKER") != "miniqmt":
        return None
    from market.bar_store import BarStore
    from market.clock import RealClock
    from market.xtquant_source import XtQuantSource
    from persistence.storage import Database

    source = XtQuantSource(settings, RealClock(), BarStore(Database(Path(data_dir) / "gateway_market.db")))
    pump = QuotePump(source, server.app.service, stop)
    try:
        pump.start()
    except DataUnavailable as exc:
        log.error("miniQMT 行情不可用（%s）：网关只提供交易接口", exc.message)
        return None
    server.app.service.on_subscribe = pump.watch
    return pump


def main(argv: Optional[Sequence[str]] = None) -> int:
    from logger import setup_logging

    args = parse_args(argv)
    try:
        settings = GatewaySettings(run_overrides(args))
    except (ValueError, config.ConfigError) as exc:
        print(f"参数无效：{exc}")
        return 2
    data_dir = Path(args.data_dir)
    secret_filter = setup_logging(args.log_dir, secrets=[settings.get("GATEWAY_TOKEN")] if settings.get("GATEWAY_TOKEN") else [])
    try:
        token = load_or_create_token(settings, data_dir)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    secret_filter.add(token)
    stop = threading.Event()
    for name in ("SIGINT", "SIGTERM", "SIGBREAK"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), lambda *_: stop.set())
    backend = connect_with_retries(settings, data_dir, Path(args.account_config) if args.account_config else None, stop)
    if backend is None:
        return 0
    account = getattr(backend, "account", None)
    if account is not None and getattr(account, "account_id", ""):
        secret_filter.add(account.account_id)
    try:
        server = build_gateway(backend, settings, data_dir, token=token, backend_name=str(settings.get("GATEWAY_BROKER")))
    except OSError as exc:
        log.error("网关无法监听 %s:%s（%s）：端口被占用或地址无效", settings.get("GATEWAY_HOST"), settings.get("GATEWAY_PORT"), exc)
        backend.close()
        return 1
    server.start()
    quotes = start_quotes(settings, data_dir, server, stop)
    log.info("QMT 远程网关已启动：http://%s:%d，券商接口 %s，允许的客户端 %s%s；令牌见 %s（或参数 GATEWAY_TOKEN）",
             server.host, server.port, settings.get("GATEWAY_BROKER"), "、".join(settings.get("GATEWAY_ALLOWED_CLIENTS")),
             "，只读模式" if settings.get("GATEWAY_READ_ONLY") else "", data_dir / TOKEN_FILE_NAME)
    stop.wait()
    log.info("QMT 远程网关正在退出")
    if quotes is not None:
        quotes.close()
    server.stop()
    backend.close()
    return 0
