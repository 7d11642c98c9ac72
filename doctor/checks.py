"""The doctor: checks of the machine the daemon runs on (Python, dependencies, xtquant's native parts, the QMT
folder and a miniQMT connection, data dir, port, clock vs the market calendar, config, databases, logs). Each
check answers OK / warning / error with a Chinese fix hint; everything it touches comes in a `DoctorEnv`, so
tests can simulate each failure. Printing is doctor.cli's, the web page is webapi.doctor's."""
from __future__ import annotations

import copy
import importlib
import importlib.machinery
import importlib.metadata
import importlib.util
import os
import re
import shutil
import socket
import sqlite3
import struct
import sys
import threading
import uuid
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Callable, Optional
from zoneinfo import ZoneInfo

import persistence.health as storage_health
from brokers.select import backend_name, is_simulation

OK, WARNING, ERROR = "ok", "warning", "error"
MARKET_TZ = ZoneInfo("Asia/Shanghai")
LEVEL_LABELS = {OK: "正常", WARNING: "警告", ERROR: "错误"}
PROJECT_DIR = Path(__file__).resolve().parents[1]
MIN_PYTHON = (3, 11)
MIN_PLAUSIBLE_DAY = date(2024, 1, 1)  # a machine clock before this is certainly wrong
# import name of each distribution in requirements.txt whose import name differs
IMPORT_NAMES = {"ta-lib": "talib", "flask-cors": "flask_cors", "exchange_calendars": "exchange_calendars"}
# imported by the doctor only through qmt.xtquant_import (importing xtquant itself calls the internet)
NOT_IMPORTED = {"xtquant"}
LIVE_ONLY = {"xtquant"}
CALENDAR_HINT = ("升级 exchange_calendars（pip install -U exchange_calendars），或把交易所公布的休市日写入节假日文件"
                 "（参数 HOLIDAYS_FILE，每行一个 YYYY-MM-DD）")
DATABASE_HINT = "停止程序后备份该文件，用数据目录 backups/ 中最近的备份替换，或用 sqlite3 的 .recover 导出修复"


@dataclass(frozen=True)
class Check:
    key: str
    name: str
    level: str
    detail: str
    hint: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "level_label": LEVEL_LABELS[self.level]}


def _default_now() -> datetime:
    return datetime.now().astimezone()


@dataclass
class DoctorEnv:
    """What the checks look at; the defaults are this machine."""

    settings: Any  # .get(key) and .snapshot()
    data_dir: Path
    log_dir: Path
    python_version: tuple = tuple(sys.version_info[:3])
    pointer_bits: int = struct.calcsize("P") * 8
    platform: str = sys.platform
    requirements: Path = PROJECT_DIR / "requirements.txt"
    import_module: Callable[[str], Any] = importlib.import_module
    version_of: Callable[[str], str] = importlib.metadata.version
    find_spec: Callable[[str], Any] = importlib.util.find_spec  # only ever asked for top-level "xtquant"
    extension_suffixes: tuple = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    account_config: Path = PROJECT_DIR / "account_config.json"
    qmt_candidates: Optional[list[Path]] = None  # None: the common install folders
    connect_broker: Optional[Callable[[], Any]] = None  # live: returns a broker with query_asset() and close()
    disk_usage: Callable[[str], Any] = shutil.disk_usage
    now: Callable[[], datetime] = _default_now  # the machine's clock, aware
    reference_time: Callable[[], Optional[datetime]] = lambda: None  # an independent clock (exchange quote time)
    is_trading_day: Optional[Callable[[date], bool]] = None
    calendar_last_day: Optional[Callable[[], Optional[date]]] = None
    port_owned_by_us: bool = False  # asked from the running daemon: its own port is in use by itself
    calendar: Any = None  # a market_rules.TradingCalendar to load HOLIDAYS_FILE into (None: a fresh one)
    extra: dict = field(default_factory=dict)


def run_all(env: DoctorEnv) -> list[Check]:
    """Every check; a check that fails unexpectedly is itself reported as an error, never raised."""
    out: list[Check] = []
    for check in CHECKS:
        try:
            result = check(env)
        except Exception as exc:  # a broken check must not hide the others
            result = Check(check.__name__.removeprefix("check_"), check.__name__, ERROR, f"检查本身出错：{exc!r}",
                           "请把该信息反馈给开发者")
        out.extend(result if isinstance(result, list) else [result])
    return out


def exit_code(checks: list[Check]) -> int:
    return 1 if any(c.level == ERROR for c in checks) else 0


# ---- the checks -----------------------------------------------------------------------------------

def check_python(env: DoctorEnv) -> Check:
    version = ".".join(map(str, env.python_version))
    detail = f"Python {version}，{env.pointer_bits} 位，平台 {env.platform}"
    if tuple(env.python_version[:2]) < MIN_PYTHON:
        return Check("python", "Python 版本", ERROR, detail, "需要 Python 3.11 或更高版本（64 位）")
    if env.pointer_bits != 64:
        level = ERROR if _live(env) else WARNING
        return Check("python", "Python 版本", level, detail, "miniQMT 的 xtquant 只支持 64 位 Python，请安装 64 位版本")
    return Check("python", "Python 版本", OK, detail)


def check_dependencies(env: DoctorEnv) -> list[Check]:
    out = []
    for name, pinned in _requirements(env.requirements):
        key = f"dependency:{name}"
        label = f"依赖 {name}"
        if name in NOT_IMPORTED:
            out.append(_xtquant_package(env, key, label, pinned))
            continue
        module = IMPORT_NAMES.get(name, name.replace("-", "_"))
        try:
            env.import_module(module)
        except Exception as exc:  # ImportError, or a native library that fails to load
            hint = f"运行 python -m pip install -r requirements.txt 安装 {name}=={pinned}"
            if name == "ta-lib":
                hint = "TA-Lib 需要其 C 库：Windows 安装对应 Python 版本的 ta-lib wheel；Linux 安装 libta-lib 后重装 ta-lib"
            out.append(Check(key, label, ERROR, f"无法导入 {module}：{exc}", hint))
            continue
        out.append(_version_check(env, key, label, name, pinned))
    out.append(_talib_c_library(env))
    return out


def check_xtquant_native(env: DoctorEnv) -> Check:
    name = "xtquant 原生模块"
    missing = [m for m in ("xtquant.xtpythonclient", "xtquant.datacenter") if not _has_native(env, m)]
    if not missing:
        return Check("xtquant_native", name, OK, "xtpythonclient 与 datacenter 均存在")
    detail = f"缺少 {', '.join(missing)}"
    if not env.platform.startswith("win"):
        level = ERROR if _needs_miniqmt(env) else OK
        return Check("xtquant_native", name, level, detail + "（非 Windows 系统，只能模拟交易/回放行情）",
                     "实盘交易需要在安装了 miniQMT 的 Windows 电脑上运行" if level == ERROR else "")
    return Check("xtquant_native", name, ERROR if _needs_miniqmt(env) else WARNING, detail,
                 "重新安装 xtquant（pip install xtquant），或使用券商 QMT 安装目录自带的 xtquant")


def check_qmt_path(env: DoctorEnv) -> Check:
    from core.models import TradingError
    from qmt.account import load_account_config, resolve_qmt_path

    name = "miniQMT 目录"
    configured = ""
    if env.account_config.exists():
        try:
            configured = load_account_config(env.account_config).qmt_path
        except TradingError as exc:
            return Check("qmt_path", name, ERROR if _needs_miniqmt(env) else WARNING, exc.message,
                         "按 account_config.json.example 填写 account_config.json")
    try:
        found = resolve_qmt_path(configured, env.qmt_candidates)
    except TradingError as exc:
        return Check("qmt_path", name, ERROR if _needs_miniqmt(env) else WARNING, exc.message,
                     "在 account_config.json 的 qmt_path 中填写 userdata_mini 的完整路径" if _needs_miniqmt(env)
                     else "模拟交易不需要 miniQMT；实盘前请配置")
    return Check("qmt_path", name, OK, f"找到 {found}")


# what the broker check names and asks the owner to start, by BROKER (issue 29/30)
BACKEND_LABELS = {"miniqmt": "miniQMT", "bigqmt": "大QMT 桥接", "remote": "远程网关"}
BACKEND_START_HINTS = {
    "miniqmt": "确认 miniQMT 已启动并登录（勾选「极简模式」）",
    "bigqmt": "确认大QMT 已登录且桥接策略以实盘方式运行（见 bigqmt/README.md）",
    "remote": "确认 Windows 电脑上的 qmt_gateway 已启动，BROKER_URL 与 BROKER_TOKEN 正确",
}


def check_broker(env: DoctorEnv) -> Check:
    backend = backend_name(env.settings)
    client = BACKEND_LABELS.get(backend, "miniQMT")
    name = f"{client} 连接与账户查询"
    if not _live(env):
        return Check("broker", name, OK, "模拟交易模式，不连接券商")
    if env.connect_broker is None:
        return Check("broker", name, ERROR, "无法建立实盘连接", BACKEND_START_HINTS.get(backend, BACKEND_START_HINTS["miniqmt"]))
    deadline = env.settings.get("DOCTOR_BROKER_TIMEOUT")
    outcome: dict[str, Any] = {}

    def attempt() -> None:
        broker = None
        try:
            broker = env.connect_broker()
            outcome["asset"] = broker.query_asset()
        except Exception as exc:  # BrokerUnavailable or anything xtquant raises
            outcome["error"] = getattr(exc, "message", None) or repr(exc)
        finally:
            if broker is not None:
                try:
                    broker.close()
                except Exception as exc:
                    outcome.setdefault("close_error", repr(exc))

    worker = threading.Thread(target=attempt, name="doctor-broker", daemon=True)
    worker.start()
    worker.join(deadline)
    if worker.is_alive():
        return Check("broker", name, ERROR, f"{deadline:g} 秒内未连接成功或账户查询无响应",
                     f"确认 {client} 已启动、已登录且未卡住；必要时重启 {client}")
    if "error" in outcome:
        return Check("broker", name, ERROR, outcome["error"],
                     f"{BACKEND_START_HINTS.get(backend, BACKEND_START_HINTS['miniqmt'])}，资金账号与 account_config.json 一致")
    asset = outcome["asset"]
    return Check("broker", name, OK, f"已连接，总资产 {asset.total_asset:.2f} 元，可用资金 {asset.cash:.2f} 元")


def check_bigqmt_bridge(env: DoctorEnv) -> Check:
    """issue 29: BROKER = bigqmt: the bridge strategy runs in big QMT, its version is this daemon's, it is bound
    to the configured account, and a round trip through QMT's strategy thread is quick (a side connection: the
    running daemon's link is not disturbed)."""
    from bigqmt.timings import bridge_version
    from bigqmt.probe import BridgeClosed, BridgeTimeout, probe_bridge
    from core.models import TradingError
    from qmt.account import load_account_config

    name = "大QMT 桥接策略"
    if not _live(env) or env.settings.get("BROKER") != "bigqmt":
        return Check("bigqmt", name, OK, "未使用大QMT 桥接（BROKER 不是 bigqmt）")
    host, port = env.settings.get("BIGQMT_HOST"), int(env.settings.get("BIGQMT_PORT"))
    folder = env.settings.get("BIGQMT_FOLDER") if env.settings.get("BIGQMT_TRANSPORT") == "folder" else ""
    try:
        probe = probe_bridge(host, port, float(env.settings.get("DOCTOR_BROKER_TIMEOUT")), folder=folder)
    except (BridgeClosed, BridgeTimeout) as exc:
        return Check("bigqmt", name, ERROR, f"{f'文件夹 {folder}' if folder else f'{host}:{port}'} 上没有可用的桥接策略（{exc}）",
                     "在大QMT「模型交易」中以「实盘交易」方式运行桥接策略（bigqmt/README.md），端口与 BIGQMT_PORT 一致")
    expected = bridge_version()
    if probe.version != expected:
        return Check("bigqmt", name, ERROR, f"大QMT 中运行的桥接策略版本为 {probe.version}，本程序需要 {expected}",
                     "把 bigqmt/bridge_strategy.py 重新粘贴到大QMT 策略编辑器，并重启该策略")
    try:
        account_id = load_account_config(env.account_config).account_id
    except TradingError as exc:
        return Check("bigqmt", name, ERROR, exc.message, "按 account_config.json.example 填写 account_config.json")
    if probe.account != account_id:
        return Check("bigqmt", name, ERROR, "桥接策略绑定的资金账号与 account_config.json 不一致" if probe.account
                     else "桥接策略没有绑定资金账号", "在「模型交易」中为桥接策略绑定 account_config.json 中的资金账号")
    detail = (f"桥接策略运行中（版本 {probe.version}），往返中位 {probe.median_ms:g} 毫秒、最长 {probe.worst_ms:g} 毫秒；"
              f"{'守护进程已连接' if probe.daemon_connected else '尚无守护进程连接'}")
    if probe.worst_ms > 1000:
        return Check("bigqmt", name, WARNING, detail, "大QMT 响应慢：关闭不用的策略和图表，或检查电脑负载")
    return Check("bigqmt", name, OK, detail)


def check_remote_gateway(env: DoctorEnv) -> Check:
    """issue 30: BROKER = remote: one signed request to qmt_gateway at BROKER_URL with BROKER_TOKEN is answered
    (with a genuine signature), the two clocks agree within the gateway's time window, the gateway's own QMT link is
    up, it accepts orders (not read-only), and the round trip is quick."""
    from qmt.link import LINK_CONNECTED, LINK_LABELS

    name = "远程网关（qmt_gateway）"
    if not _live(env) or env.settings.get("BROKER") != "remote":
        return Check("gateway", name, OK, "未使用远程网关（BROKER 不是 remote）")
    url, token = str(env.settings.get("BROKER_URL") or ""), str(env.settings.get("BROKER_TOKEN") or "")
    if not url or not token:
        return Check("gateway", name, ERROR, "BROKER = remote 但未设置 BROKER_URL 或 BROKER_TOKEN",
                     "在参数中填写网关地址（如 http://192.168.1.20:5800）和网关令牌（网关数据目录中的 gateway_token）")
    try:
        ping = _ping_gateway(url, token, lambda: env.now().timestamp(), float(env.settings.get("DOCTOR_BROKER_TIMEOUT")))
    except ValueError:
        return Check("gateway", name, ERROR, f"BROKER_URL 格式不正确：{url}", "应如 http://192.168.1.20:5800")
    except OSError as exc:
        return Check("gateway", name, ERROR, f"无法连接网关 {url}（{type(exc).__name__}: {exc}）",
                     "确认 Windows 机器上 qmt_gateway 已启动；局域网访问时网关的 GATEWAY_HOST 不能只监听 127.0.0.1，"
                     "且 Windows 防火墙放行该端口；BROKER_URL 的地址和端口与网关一致")
    refused = _gateway_refusal(ping, float(env.settings.get("GATEWAY_TIME_WINDOW")))
    if refused is not None:
        return Check("gateway", name, ERROR, *refused)
    status = ping.payload
    state = str(status.get("link_state", ""))
    clock = f"时钟相差约 {round(ping.skew):+d} 秒" if ping.skew is not None else "网关未报告时间"
    facts = (f"网关 {url} 已应答签名请求（券商接口 {status.get('backend') or '未知'}），往返 {ping.rtt_ms:.1f} 毫秒，{clock}；"
             f"网关的券商连接：{LINK_LABELS.get(state, state)}；{'只读模式（拒绝委托与撤单）' if status.get('read_only') else '可交易'}")
    if not status.get("connected") or state != LINK_CONNECTED:
        return Check("gateway", name, ERROR, facts, "在 Windows 机器上确认 miniQMT（或大QMT 桥接策略）已启动并登录；网关会自动重连")
    if status.get("read_only"):
        return Check("gateway", name, WARNING, facts, "网关处于只读模式，守护进程无法下单和撤单（止损也不能卖出）：交易用的网关"
                                                      "须把 GATEWAY_READ_ONLY 设为 False 后重启网关")
    tolerance = float(env.settings.get("DOCTOR_CLOCK_TOLERANCE_SECONDS"))
    if ping.skew is not None and abs(ping.skew) > tolerance:
        return Check("gateway", name, WARNING, facts, f"两台机器时钟相差超过 {tolerance:g} 秒，接近网关的时间窗口时请求会被拒绝："
                                                      "两台机器都开启网络时间同步（Windows「自动设置时间」）")
    slow = float(env.settings.get("DOCTOR_GATEWAY_SLOW_MS"))
    if ping.rtt_ms > slow:
        return Check("gateway", name, WARNING, facts, f"往返超过 {slow:g} 毫秒：网络较慢，委托确认会变慢；尽量让两台机器在同一局域网")
    return Check("gateway", name, OK, facts)


@dataclass(frozen=True)
class GatewayPing:
    status: int
    payload: Any
    genuine: bool  # the answer is signed with our token and our request's nonce
    rtt_ms: float
    skew: Optional[float]  # gateway clock minus ours (seconds, ±1 s: from the answer's Date header)


def _ping_gateway(url: str, token: str, wall: Callable[[], float], timeout: float) -> GatewayPing:
    """One signed GET /status on a fresh connection (the running daemon's connections are not disturbed).
    Raises ValueError (bad URL) or OSError (not reachable, no answer within `timeout`)."""
    import http.client
    import json
    import time
    from email.utils import parsedate_to_datetime
    from urllib.parse import urlsplit

    from gateway.auth import HEADER_NONCE, HEADER_SIGNATURE, answer_is_genuine, signed_headers

    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(url)
    https = parts.scheme == "https"
    connection = (http.client.HTTPSConnection if https else http.client.HTTPConnection)(
        parts.hostname, parts.port or (443 if https else 80), timeout=timeout)
    target = parts.path.rstrip("/") + "/status"
    try:
        sent_at, started = wall(), time.monotonic()
        headers = signed_headers(token, "GET", target, b"", sent_at)
        connection.request("GET", target, headers=headers)
        response = connection.getresponse()
        body = response.read()
        rtt = time.monotonic() - started
    except http.client.HTTPException as exc:
        raise OSError(f"网关应答不完整（{type(exc).__name__}）") from None
    finally:
        connection.close()
    try:
        payload = json.loads(body.decode("utf-8"))
    except ValueError:
        payload = {}
    skew = None
    if response.getheader("Date"):
        try:
            skew = parsedate_to_datetime(response.getheader("Date")).timestamp() - (sent_at + rtt / 2)
        except (TypeError, ValueError):
            skew = None
    genuine = answer_is_genuine(token, headers[HEADER_NONCE], response.status, body, response.getheader(HEADER_SIGNATURE))
    return GatewayPing(response.status, payload if isinstance(payload, dict) else {}, genuine, rtt * 1000, skew)


def _gateway_refusal(ping: GatewayPing, window: float) -> Optional[tuple[str, str]]:
    """(detail, hint) when the gateway refused the request or its answer is not genuine; None when it answered us."""
    code, message = str(ping.payload.get("code", "")), str(ping.payload.get("message", ""))
    if code == "ADDRESS_NOT_ALLOWED":
        return (f"网关拒绝本机地址：{message}", "把本机地址（或网段，如 192.168.1.0/24）加入网关的 GATEWAY_ALLOWED_CLIENTS 后重启网关")
    if code in ("AUTH_BAD_SIGNATURE", "AUTH_MISSING"):
        return ("令牌不符：网关拒绝了签名", "BROKER_TOKEN 须与网关的 GATEWAY_TOKEN（或网关数据目录中 gateway_token 文件的内容）完全一致")
    if code == "AUTH_STALE":
        return (f"两台机器时钟相差超过网关的时间窗口（约 {window:g} 秒），网关拒绝请求",
                "两台机器都开启网络时间同步（Windows「自动设置时间」），校准后重试")
    if ping.status != 200:
        return (f"网关应答 HTTP {ping.status}：{message or '未知错误'}", "查看网关日志（网关日志目录）")
    if not ping.genuine:
        return ("令牌不符：网关应答的签名无效（令牌不一致或应答在途中被改动）",
                "BROKER_TOKEN 须与网关的令牌完全一致；跨不可信网络请在 VPN 或 SSH 隧道中使用网关")
    return None


def check_data_dir(env: DoctorEnv) -> Check:
    name = "数据目录"
    path = Path(env.data_dir)
    probe = path / f".doctor-{uuid.uuid4().hex}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:  # the daemon's own refusal line for this dir
        return Check("data_dir", name, ERROR, storage_health.describe_os_error(exc, path),
                     "换一个可写的目录（--data-dir），或检查该目录的权限")
    free_mb = env.disk_usage(str(path)).free / 1024 / 1024
    minimum = env.settings.get("DOCTOR_MIN_FREE_MB")
    detail = f"{path.resolve()} 可写，剩余空间 {free_mb:,.0f} MB"
    if free_mb < minimum:
        return Check("data_dir", name, ERROR, detail, f"磁盘剩余空间低于 {minimum:g} MB：请清理磁盘，否则数据库可能写入失败")
    return Check("data_dir", name, OK, detail)


def check_port(env: DoctorEnv) -> Check:
    name = "Web 端口"
    host, port = env.settings.get("WEB_HOST"), int(env.settings.get("WEB_PORT"))
    if env.port_owned_by_us:
        return Check("port", name, OK, f"{host}:{port} 由本服务使用中")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:  # the words of the daemon's refusal (composition: WEB_START_FAILED)
            return Check("port", name, ERROR, f"网页服务无法在 {host}:{port} 启动（{exc.strerror or exc}），"
                                              f"请检查端口是否已被占用，或用 --port 换一个端口",
                         "该端口已被占用（可能已有一个本程序在运行）：关闭占用者，或用 --port 换一个端口")
    return Check("port", name, OK, f"{host}:{port} 可用")


def check_clock(env: DoctorEnv) -> Check:
    name = "系统时钟与交易日历"
    now = env.now()
    today = now.astimezone(MARKET_TZ).date()  # the exchange's date, whatever the machine's time zone
    if today < MIN_PLAUSIBLE_DAY:
        return Check("clock", name, ERROR, f"本机日期为 {today}，明显不正确", "校准系统日期和时间（开启自动同步时间）")
    offset = now.utcoffset()
    tz_note = f"本机时区 UTC{_hours(offset)}" if offset is not None else "本机时区未知"
    last = env.calendar_last_day() if env.calendar_last_day else None
    if last is not None and today > last:
        return Check("clock", name, WARNING, f"交易日历只覆盖到 {last}，今天 {today} 按工作日估算；{tz_note}",
                     CALENDAR_HINT)
    trading = env.is_trading_day(today) if env.is_trading_day else None
    day_note = "交易日未知" if trading is None else (f"今天（{today}）是交易日" if trading else f"今天（{today}）不是交易日")
    reference = env.reference_time()
    if reference is None:
        return Check("clock", name, OK, f"{now:%Y-%m-%d %H:%M:%S}，{day_note}，{tz_note}（无可比对的行情时间，未检查偏差）")
    drift = (now - reference).total_seconds()
    tolerance = env.settings.get("DOCTOR_CLOCK_TOLERANCE_SECONDS")
    detail = f"本机时间比行情时间{'快' if drift >= 0 else '慢'} {abs(drift):.1f} 秒；{day_note}，{tz_note}"
    if abs(drift) > tolerance:
        return Check("clock", name, ERROR, detail, f"偏差超过 {tolerance:g} 秒：开启系统的自动时间同步（Windows：设置 → 时间和语言 → 立即同步）")
    return Check("clock", name, OK, detail)


def check_config(env: DoctorEnv) -> Check:
    import config

    name = "参数配置"
    result = config.validate(env.settings.snapshot())
    if result.errors:
        listed = "；".join(f"{k}：{v}" for k, v in result.errors.items())
        return Check("config", name, ERROR, listed, "在网页「参数设置」或 config.py 中改正这些参数")
    if result.warnings:
        return Check("config", name, WARNING, "；".join(result.warnings), "这些设置允许但可能不会按预期生效")
    return Check("config", name, OK, "全部参数有效")


def check_databases(env: DoctorEnv) -> list[Check]:
    """Each database of the data dir read-only; a damaged or unreadable one in the daemon's refusal words."""
    data_dir = Path(env.data_dir)
    paths = sorted(data_dir.glob("*.db"))
    if not paths:
        return [Check("databases", "数据库", OK, "数据目录中还没有数据库（首次启动时创建）")]
    out = []
    for path in paths:
        name = f"数据库 {path.name}"
        if path.stat().st_size == 0:
            continue  # an empty file is check_startup_files' refusal
        problem = storage_health.probe_file(path)
        if problem is None:
            out.append(Check(f"database:{path.name}", name, OK, "完整性检查通过"))
        else:
            message = storage_health.refusal(problem, path, data_dir, storage_health.database_label(path)).message
            if path.name not in storage_health.DATABASE_LABELS:  # not one the daemon opens: no refusal
                message = message.removeprefix("拒绝启动：")
            out.append(Check(f"database:{path.name}", name, ERROR, message, DATABASE_HINT))
    return out


def check_startup_files(env: DoctorEnv) -> list[Check]:
    """The daemon's file refusals before anything is opened: a database that is empty, or missing from a data
    dir that has been used (its account would be silently re-created), and a missing replay folder."""
    data_dir = Path(env.data_dir)
    mode = "live" if _live(env) else "simulation"
    config_hint = storage_health.CONFIG_RESET_HINT.format(marker=data_dir / storage_health.MARKER_NAME)
    files = [(data_dir / "config.db", config_hint),
             (data_dir / ("trading.db" if mode == "live" else "sim_trading.db"), storage_health.RESET_HINTS[mode])]
    out = []
    for path, reset_hint in files:
        try:
            storage_health.check_database_file(path, data_dir, storage_health.database_label(path), reset_hint)
        except storage_health.StorageRefused as exc:
            out.append(Check(f"startup:{path.name}", f"数据库 {path.name}", ERROR, exc.message, DATABASE_HINT))
    return out + [_replay_folder(env)]


def check_calendar(env: DoctorEnv) -> Check:
    """The owner's holiday file as the daemon reads it at start, and how far the known trading days reach."""
    import market_rules

    name = "交易日历与节假日文件"
    # a copy: asked from the running daemon, the check must not change the calendar it trades on
    calendar = copy.copy(env.calendar) if env.calendar is not None else market_rules.TradingCalendar()
    try:
        warning = market_rules.configure_calendar(calendar, env.settings.get("HOLIDAYS_FILE"),
                                                  env.now().astimezone(MARKET_TZ).date(),
                                                  env.settings.get("CALENDAR_WARN_DAYS"))
    except ValueError as exc:
        return Check("calendar", name, ERROR, f"配置无效，拒绝启动：{exc}", "按「每行一个 YYYY-MM-DD」改正该文件，或清空 HOLIDAYS_FILE")
    if warning:
        return Check("calendar", name, WARNING, warning, CALENDAR_HINT)
    return Check("calendar", name, OK, f"已知交易日到 {calendar.known_through}")


def _replay_folder(env: DoctorEnv) -> Check:
    name = "回放数据目录"
    folder = str(env.settings.get("REPLAY_DATA_DIR") or "")
    source = env.settings.get("DATA_SOURCE")
    if not folder:
        return Check("replay_data", name, OK, "未设置（使用演示行情或实时行情）")
    if Path(folder).is_dir():
        return Check("replay_data", name, OK, f"{folder} 存在")
    replayed = source == "replay" or (source == "auto" and not env.settings.get("MOOTDX_SERVER"))
    # the daemon's words (data_manager: REPLAY_DIR_MISSING, shown as 「启动失败：…」)
    return Check("replay_data", name, ERROR if replayed else WARNING, f"回放数据目录不存在：{Path(folder)}",
                 "检查 --replay-data / REPLAY_DATA_DIR 的路径（日线 CSV 目录或通达信 vipdoc 目录）")


def check_log_dir(env: DoctorEnv) -> Check:
    name = "日志目录"
    path = Path(env.log_dir)
    if path.exists() and not path.is_dir():  # the daemon's logger setup fails here: its refusal line
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return Check("log_dir", name, ERROR, storage_health.describe_os_error(exc, path),
                         "用 --log-dir 指定一个目录（这里是一个文件）")
    if not path.exists():
        return Check("log_dir", name, OK, f"{path} 尚不存在（首次启动时创建）")
    size_mb = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1024 / 1024
    limit = env.settings.get("DOCTOR_LOG_DIR_WARN_MB")
    detail = f"{path.resolve()} 共 {size_mb:,.1f} MB"
    if size_mb > limit:
        return Check("log_dir", name, WARNING, detail, f"超过 {limit:g} MB：减小 LOG_RETENTION_DAYS 或清理旧日志")
    return Check("log_dir", name, OK, detail)


CHECKS = (check_python, check_dependencies, check_xtquant_native, check_qmt_path, check_broker, check_bigqmt_bridge,
          check_remote_gateway,
          check_data_dir,
          check_port, check_calendar, check_clock, check_config, check_startup_files, check_databases, check_log_dir)


# ---- helpers --------------------------------------------------------------------------------------

def _live(env: DoctorEnv) -> bool:
    return not is_simulation(env.settings)


def _needs_miniqmt(env: DoctorEnv) -> bool:
    """Live through miniQMT on this machine (the big-QMT bridge and the remote gateway need no local xtquant)."""
    return _live(env) and (env.settings.get("BROKER") or "miniqmt") == "miniqmt"


def _requirements(path: Path) -> list[tuple[str, str]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#]+)", line)
        if match:
            out.append((match.group(1).lower(), match.group(2)))
    return out


def _version_check(env: DoctorEnv, key: str, label: str, name: str, pinned: str) -> Check:
    try:
        installed = env.version_of(name)
    except importlib.metadata.PackageNotFoundError:
        installed = "未知"
    if installed != pinned:
        return Check(key, label, WARNING, f"已安装 {installed}，要求 {pinned}",
                     f"python -m pip install {name}=={pinned}（版本不同可能行为不同）")
    return Check(key, label, OK, f"{installed}")


def _xtquant_package(env: DoctorEnv, key: str, label: str, pinned: str) -> Check:
    if env.find_spec("xtquant") is None:
        level = ERROR if _live(env) else WARNING
        return Check(key, label, level, "未安装", f"python -m pip install xtquant=={pinned}（实盘交易需要）")
    return _version_check(env, key, label, "xtquant", pinned)


def _talib_c_library(env: DoctorEnv) -> Check:
    try:
        talib = env.import_module("talib")
        version = getattr(talib, "__ta_version__", "")
    except Exception as exc:
        return Check("talib_c", "TA-Lib C 库", ERROR, f"无法加载：{exc}",
                     "安装 TA-Lib C 库（Windows 使用自带 C 库的 ta-lib wheel；Linux 安装 libta-lib）")
    version = version.decode() if isinstance(version, bytes) else str(version)
    return Check("talib_c", "TA-Lib C 库", OK, version or "已加载")


def _has_native(env: DoctorEnv, module: str) -> bool:
    """Looks for the loadable extension file in xtquant's folder; never imports xtquant (its __init__ calls
    the internet). The Windows wheel's .pyd files are not loadable elsewhere, so they do not count there."""
    spec = env.find_spec("xtquant")
    if spec is None or not spec.submodule_search_locations:
        return False
    stem = module.rsplit(".", 1)[1]
    folder = Path(list(spec.submodule_search_locations)[0])
    return any(p.name.startswith(stem) and p.name.endswith(tuple(env.extension_suffixes)) for p in folder.iterdir())


def _hours(offset) -> str:
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
