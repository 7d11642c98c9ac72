"""Previous-day orders still open in our journal at start-up (issue 13). xtquant returns only TODAY's orders
and trades, so whether such an order filled before it expired cannot be read from the broker: it is judged
from the position change (our last known volume → the broker's volume now). What the change proves is
recorded; anything else is marked 「需人工核对」 (terminal, so no shares stay reserved for it)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from core.models import OrderStatus, Side

CHECK = "需人工核对"


@dataclass(frozen=True)
class Verdict:
    entry: object  # core.order_journal.JournalEntry
    status: OrderStatus
    filled_volume: int
    reason: str


def judge(entries: Iterable, held: Mapping[str, int], broker: Mapping[str, int]) -> list[Verdict]:
    """One verdict per entry. Per stock: change = broker volume − our volume; the unfilled remainders of the
    previous-day buys (+) and sells (−) explain it fully (filled), not at all (expired), or partly (one
    order only); mixed sides or a change no order explains need the operator."""
    by_code: dict[str, list] = {}
    for entry in entries:
        by_code.setdefault(entry.stock_code, []).append(entry)
    verdicts: list[Verdict] = []
    for code, group in by_code.items():
        change = int(broker.get(code, 0)) - int(held.get(code, 0))
        sides = {e.side for e in group}
        expected = sum(e.remaining if e.side is Side.BUY else -e.remaining for e in group)
        if len(sides) > 1:
            verdicts += [_unexplained(e, change) for e in group]
        elif change == 0:
            verdicts += [Verdict(e, OrderStatus.CANCELLED, e.filled_volume, "隔日委托：持仓未变化，未成交，已按收盘失效处理")
                         for e in group]
        elif change == expected:
            verdicts += [Verdict(e, OrderStatus.FILLED, e.volume,
                                 f"隔日委托：持仓变化 {change:+d} 股与委托剩余数量一致，按已成交处理；成交价未知，"
                                 f"未计入成交记录，{CHECK}") for e in group]
        elif len(group) == 1 and 0 < abs(change) < abs(expected) and (change > 0) == (expected > 0):
            e = group[0]
            verdicts.append(Verdict(e, OrderStatus.CANCELLED, e.filled_volume + abs(change),
                                    f"隔日委托：持仓变化表明成交 {abs(change)} 股（成交价未知），其余已按收盘失效处理，{CHECK}"))
        else:
            verdicts += [_unexplained(e, change) for e in group]
    return verdicts


def _unexplained(entry, change: int) -> Verdict:
    return Verdict(entry, OrderStatus.CANCELLED, entry.filled_volume,
                   f"隔日委托：持仓变化 {change:+d} 股无法与隔日委托对应，是否成交未知，{CHECK}")
