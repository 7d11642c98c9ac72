"""Pure rules of notification delivery: the text of a message, which events are de-duplicated, the retry
back-off, when a channel's backlog becomes one digest, and how many messages a channel may still send now.
No I/O and no clock: the notifier passes the facts in."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence
from urllib.parse import parse_qsl, unquote, urlsplit

from events import Event, EventKind

# Facts that are never duplicates of each other even when their text matches (two equal partial fills).
NOT_DEDUPLICATED = frozenset({EventKind.FILL, EventKind.STOP_LOSS_EXECUTED, EventKind.DAILY_REPORT,
                              EventKind.DAEMON_START, EventKind.DAEMON_STOP, EventKind.TRADING_STATE})
DIGEST_LINES = 40  # lines shown in one digest; the rest are counted
TITLE_PREFIX = "miniQMT"


@dataclass(frozen=True)
class Draft:
    """A message before it is stored: what a person reads, plus the key used for duplicate suppression."""

    kind: str
    title: str
    body: str
    dedup_key: Optional[str]


def draft(event: Event, stock_name: str = "", facts: Optional[dict] = None) -> Draft:
    """Chinese, short: 【label】message (stock name) time on the market clock. `facts` = figures looked up
    off the trading path (a sell's realised P&L)."""
    facts = {**event.data, **(facts or {})}
    name = f"（{stock_name}）" if stock_name and stock_name not in event.message else ""
    when = event.time.strftime("%Y-%m-%d %H:%M:%S")
    body = f"{event.message}{name}\n时间：{when}"
    if event.kind is EventKind.FILL and facts.get("realized_pnl") is not None:
        body += f"\n本笔已实现盈亏：{facts['realized_pnl']:+.2f} 元"
        if facts.get("episode_realized_pnl") is not None:
            closed = "，已清仓" if facts.get("episode_closed") else ""
            body += f"（本轮持仓累计 {facts['episode_realized_pnl']:+.2f} 元{closed}）"
    title = f"{TITLE_PREFIX}【{event.kind.label}】{event.stock_code}".rstrip()
    dedup = None if event.kind in NOT_DEDUPLICATED else f"{event.kind.value}|{event.stock_code}|{event.message}"
    return Draft(event.kind.value, title, body, dedup)


def backoff_seconds(attempts: int, base: float, cap: float) -> float:
    """Seconds before attempt `attempts + 1` after `attempts` failures: base, 2·base, 4·base … ≤ cap."""
    return min(cap, base * 2 ** max(0, attempts - 1))


def sendable_now(sent_in_window: int, limit: int) -> int:
    """How many messages a channel may still send in the current rate window."""
    return max(0, limit - sent_in_window)


def should_digest(pending: int, threshold: int, allowance: int) -> bool:
    """A backlog becomes one digest when it reaches the threshold, or when the rate limit would otherwise
    hold back part of it (several pending, fewer slots than messages)."""
    return pending >= threshold or (pending > 1 and allowance < pending)


def digest_text(items: Sequence[tuple[str, str]]) -> tuple[str, str]:
    """`items` = (title, body) of the messages merged, oldest first → (title, body) of the digest."""
    count = len(items)
    lines = []
    for title, body in items[:DIGEST_LINES]:
        label = title.removeprefix(TITLE_PREFIX).split("】")[0] + "】"  # the kind; the message names the stock
        first, _, rest = body.partition("\n")
        when = rest.removeprefix("时间：")[11:19] if rest.startswith("时间：") else ""
        lines.append(f"{when} {label} {first}".strip())
    if count > DIGEST_LINES:
        lines.append(f"……另有 {count - DIGEST_LINES} 条，详见网页「通知」")
    return f"{TITLE_PREFIX}【汇总】{count} 条通知", "\n".join(lines)


def url_scheme(url: str) -> str:
    return urlsplit(url).scheme.lower()


def mask_url(url: str) -> str:
    """What the UI and API show of a channel URL: the scheme, and the host when it is a network address (a
    robot's token often sits where the host would, e.g. dingtalk://TOKEN/)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    shown = host if "." in host or host == "localhost" else ""
    return f"{parts.scheme}://{shown}/******" if shown else f"{parts.scheme}://******"


def url_secrets(url: str) -> list[str]:
    """Every piece of an apprise URL that may be a credential (for the logger's secret filter): the URL
    itself, the user and password, each path segment and each query value of 6 characters or more."""
    parts = urlsplit(url)
    pieces = [url, parts.username or "", parts.password or ""]
    pieces += [unquote(s) for s in parts.path.split("/")]
    pieces += [v for _, v in parse_qsl(parts.query)]
    return [p for p in dict.fromkeys(pieces) if p and len(p) >= 6]
