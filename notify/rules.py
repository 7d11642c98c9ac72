"""Pure rules of notification delivery: the text of a message, which events are alarms (sent first, on their
own, outside the routine rate budget) or reach every channel, which are de-duplicated, the retry back-off, and
which pending messages of a channel go out next — one message, or one digest of a coalesced burst.
No I/O and no clock: the notifier passes the facts in."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence
from urllib.parse import parse_qsl, unquote, urlsplit

from core.events import Event, EventKind

TITLE_PREFIX = "miniQMT"
DIGEST_KIND = "digest"
ROUTINE, ALARM = 0, 1  # outbox priorities

# Alarm-class events, by EventKind member name (a name not defined in core/events.py is ignored): each goes out on
# its own, ahead of queued routine messages, within its own rate budget (NOTIFY_ALARM_RATE_LIMIT) and never
# behind the coalescing window. ALARM is the catch-all "anomaly an operator must see" (a failing channel…).
ALARM_KIND_NAMES = ("THREAD_ALARM", "THREAD_RESTARTED", "BROKER_DISCONNECTED", "LINK_UNHEALTHY", "QUOTES_STALE",
                    "STORAGE_FAILURE", "CIRCUIT_BREAKER", "DAILY_LOSS_LIMIT", "TRADING_STATE", "DAEMON_STOP",
                    "PROTECTION_FAILURE", "PROTECTION_RESTORED", "ALARM")
# The protection guarantee's messages go to EVERY enabled channel whatever events it subscribed to (a channel
# set to 「成交」 only must still hear that a stop-loss is blocked, and that it cleared): decided so because the
# owner may have subscribed his phone to fills only, and DESIGN §8a promises the failure is told at once.
EVERY_CHANNEL_KIND_NAMES = ("PROTECTION_FAILURE", "PROTECTION_RESTORED")
# Facts that are never duplicates of each other even when their text matches (two equal partial fills); the
# protection failure repeats by design (the sentinel decides how often).
NOT_DEDUPLICATED_NAMES = ("FILL", "STOP_LOSS_EXECUTED", "DAILY_REPORT", "DAEMON_START", "DAEMON_STOP",
                          "TRADING_STATE", "PROTECTION_FAILURE", "PROTECTION_RESTORED")


def _kind_values(names: Sequence[str]) -> frozenset[str]:
    return frozenset(EventKind.__members__[n].value for n in names if n in EventKind.__members__)


ALARM_KINDS = _kind_values(ALARM_KIND_NAMES)
EVERY_CHANNEL_KINDS = _kind_values(EVERY_CHANNEL_KIND_NAMES)
NOT_DEDUPLICATED = _kind_values(NOT_DEDUPLICATED_NAMES)
STOP_LOSS_RULE = "stop_loss"


def is_alarm(kind: str) -> bool:
    return kind in ALARM_KINDS


def priority_of(kind: str) -> int:
    return ALARM if is_alarm(kind) else ROUTINE


def reaches_every_channel(kind: str) -> bool:
    return kind in EVERY_CHANNEL_KINDS


def kind_label(kind: str) -> str:
    try:
        return EventKind(kind).label
    except ValueError:
        return kind


@dataclass(frozen=True)
class Draft:
    """A message before it is stored: what a person reads, plus the key used for duplicate suppression.
    `also_wanted_by` = another event kind whose subscribers want this message too (a stop-loss fill)."""

    kind: str
    title: str
    body: str
    dedup_key: Optional[str]
    also_wanted_by: str = ""


def draft(event: Event, stock_name: str = "", facts: Optional[dict] = None) -> Draft:
    """Chinese, short: 【label】message (stock name) time on the market clock. `facts` = figures looked up
    off the trading path (a sell's realised P&L). A stop-loss fill is THE stop-loss message (「止损已执行」 with
    the fill's figures): its separate STOP_LOSS_EXECUTED event is then not sent again (`is_stop_loss_fill`)."""
    facts = {**event.data, **(facts or {})}
    name = f"（{stock_name}）" if stock_name and stock_name not in event.message else ""
    when = event.time.strftime("%Y-%m-%d %H:%M:%S")
    body = f"{event.message}{name}\n时间：{when}"
    if event.kind is EventKind.FILL and facts.get("realized_pnl") is not None:
        body += f"\n本笔已实现盈亏：{facts['realized_pnl']:+.2f} 元"
        if facts.get("episode_realized_pnl") is not None:
            closed = "，已清仓" if facts.get("episode_closed") else ""
            body += f"（本轮持仓累计 {facts['episode_realized_pnl']:+.2f} 元{closed}）"
    kind, also = event.kind, ""
    if is_stop_loss_fill(event):
        kind, also = EventKind.STOP_LOSS_EXECUTED, EventKind.FILL.value
    title = f"{TITLE_PREFIX}【{kind.label}】{event.stock_code}".rstrip()
    dedup = None if event.kind.value in NOT_DEDUPLICATED else f"{event.kind.value}|{event.stock_code}|{event.message}"
    return Draft(kind.value, title, body, dedup, also)


def is_stop_loss_fill(event: Event) -> bool:
    return event.kind is EventKind.FILL and event.data.get("rule") == STOP_LOSS_RULE


def stop_loss_signature(event: Event) -> tuple:
    """What a stop-loss fill and its STOP_LOSS_EXECUTED companion (composition publishes both) share."""
    return event.stock_code, event.data.get("volume"), event.data.get("price")


def backoff_seconds(attempts: int, base: float, cap: float) -> float:
    """Seconds before attempt `attempts + 1` after `attempts` failures: base, 2·base, 4·base … ≤ cap."""
    return min(cap, base * 2 ** max(0, attempts - 1))


def sendable_now(sent_in_window: int, limit: int) -> int:
    """How many messages a channel may still send in the current rate window."""
    return max(0, limit - sent_in_window)


# ---- which pending messages go out next ----------------------------------------------------------------
@dataclass(frozen=True)
class Pending:
    """One pending outbox row as the planner sees it (rows of one channel and one priority, oldest first)."""

    id: int
    kind: str
    created_at: float
    next_attempt_at: float
    attempts: int
    size: int  # characters of its body


@dataclass(frozen=True)
class Coalescing:
    quiet_seconds: float  # a burst is over when nothing new came for this long
    max_hold_seconds: float  # … or when its first message has waited this long
    digest_threshold: int  # this many ready messages (or more than the rate allows) become one digest
    digest_max_chars: int  # a digest longer than this is split (in order) into several


@dataclass(frozen=True)
class Plan:
    """`ids` go out now: one message when a single id, else one digest of them. `ready_at` (when nothing goes
    now) = the earliest moment something may, ignoring the rate limit; None when nothing is pending."""

    ids: tuple[int, ...] = ()
    ready_at: Optional[float] = None


def plan_alarms(pending: Sequence[Pending], now: float, allowance: int, max_chars: int) -> Plan:
    """Alarms go at once, each on its own, in order; only an alarm storm beyond the alarm budget is folded
    into one digest (whose title then says it holds alarms)."""
    if not pending:
        return Plan()
    head = pending[0]
    if head.next_attempt_at > now:  # the head is backing off: nothing overtakes it (order is kept)
        return Plan(ready_at=head.next_attempt_at)
    if allowance <= 0:
        return Plan(ready_at=now)
    due = _due_run(pending, now)
    if head.kind == DIGEST_KIND or len(due) <= allowance:
        return Plan((head.id,))
    return Plan(_fit(due, max_chars))


def plan_routine(pending: Sequence[Pending], now: float, allowance: int, rules: Coalescing) -> Plan:
    """Routine messages wait until their burst is over (quiet window, bounded by the max hold), then go as one
    message or one digest, in arrival order, within the channel's rate budget."""
    if not pending:
        return Plan()
    head = pending[0]
    if head.next_attempt_at > now:
        return Plan(ready_at=head.next_attempt_at)
    if head.kind == DIGEST_KIND:  # a digest being retried goes as it is, first
        return Plan((head.id,)) if allowance > 0 else Plan(ready_at=now)
    run = _due_run(pending, now)
    due = run[:next((i for i, p in enumerate(run) if p.kind == DIGEST_KIND), len(run))]  # a digest keeps its place
    quiet_at = due[-1].created_at + rules.quiet_seconds
    forced_at = head.created_at + rules.max_hold_seconds
    if head.attempts == 0 and now < min(quiet_at, forced_at):
        return Plan(ready_at=min(quiet_at, forced_at))
    if allowance <= 0:
        return Plan(ready_at=now)
    if len(due) >= rules.digest_threshold or (len(due) > 1 and allowance < len(due)):
        return Plan(_fit(due, rules.digest_max_chars))
    return Plan((head.id,))


def _due_run(pending: Sequence[Pending], now: float) -> list[Pending]:
    """The head and the rows after it up to the first one still backing off."""
    run = []
    for row in pending:
        if row.next_attempt_at > now:
            break
        run.append(row)
    return run


def _fit(rows: Sequence[Pending], max_chars: int) -> tuple[int, ...]:
    """The longest prefix of `rows` whose digest stays within `max_chars` (at least one row)."""
    taken, total = [], 0
    for row in rows:
        cost = row.size + 16  # its digest line: + date, label, indent; − its 「时间：…」 line
        if taken and total + cost > max_chars:
            break
        taken.append(row.id)
        total += cost
    return tuple(taken)


@dataclass(frozen=True)
class DigestItem:
    kind: str
    title: str
    body: str
    event_time: str  # "YYYY-MM-DD HH:MM:SS" on the market clock, or ""


def digest_text(items: Sequence[DigestItem]) -> tuple[str, str]:
    """(title, body) of one digest: every message's full text, in market-time order with the date; the title
    names any alarm it had to hold."""
    ordered = sorted(enumerate(items), key=lambda pair: (pair[1].event_time or _body_time(pair[1].body), pair[0]))
    blocks = [_digest_block(item) for _, item in ordered]
    count = len(items)
    alarms = sorted({kind_label(i.kind) for i in items if is_alarm(i.kind)})
    held = f"（含告警：{'、'.join(alarms)}）" if alarms else ""
    title = f"{TITLE_PREFIX}【汇总{'·含告警' if alarms else ''}】{count} 条通知{held}"
    return title, "\n".join(blocks)


def _digest_block(item: DigestItem) -> str:
    label = item.title.removeprefix(TITLE_PREFIX).split("】")[0] + "】"  # the kind; the message names the stock
    lines = [line for line in item.body.splitlines() if not line.startswith("时间：")]
    when = item.event_time or _body_time(item.body)
    first = f"{when} {label} {lines[0] if lines else ''}".strip()
    return "\n".join([first] + [f"    {line}" for line in lines[1:]])


def _body_time(body: str) -> str:
    for line in body.splitlines():
        if line.startswith("时间："):
            return line.removeprefix("时间：").strip()
    return ""


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
