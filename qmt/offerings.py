"""miniQMT's new share / new bond queries for the idle-cash chores (issue 28 §3): today's offerings
(`XtQuantTrader.query_ipo_data`) and the account's subscription quota (`query_new_purchase_limit`), through their
*_async variants with a deadline like every other query (a sync xttrader call can block for ever). Answers keep
xttrader's own shapes; chores.rules reads them."""
from __future__ import annotations

import threading
from typing import Any, Callable

from core.models import BrokerUnavailable, Rule


def query_ipo_data(session, timeout: float) -> dict[str, dict[str, Any]]:
    """{subscription code: {name, type 'STOCK'|'BOND', minPurchaseNum, maxPurchaseNum, purchaseDate, issuePrice}}
    for today, as xttrader.query_ipo_data builds it from the native rows."""
    rows = _ask(lambda answer: session.trader.query_ipo_data_async(answer), timeout, "新股新债信息")
    return {str(item.m_strIPOCode): {"name": item.m_strIPOName, "type": item.m_strIPOType,
                                     "maxPurchaseNum": item.m_nMaxPurchaseNum,
                                     "minPurchaseNum": item.m_nMinPurchaseNum,
                                     "purchaseDate": item.m_strPurchaseDate, "issuePrice": item.m_dIssuePrice}
            for item in rows or []}


def query_new_purchase_limit(session, timeout: float) -> dict[str, int]:
    """{'KCB': n, 'SH': n, 'SZ': n}: shares the account may subscribe per market (../shared/reference §7 [V, 20])."""
    rows = _ask(lambda answer: session.trader.query_new_purchase_limit_async(session.account, answer), timeout,
                "新股申购额度")
    return {str(item.m_strNewPurchaseLimitKey): int(item.m_nNewPurchaseLimitValue) for item in rows or []}


def _ask(send: Callable[[Callable[[Any], None]], Any], timeout: float, label: str) -> Any:
    """The async query's raw answer (the native list: xttrader's async variants hand it over unconverted),
    waited for at most `timeout` seconds; the answer arrives on xttrader's push thread, where we only store it."""
    done = threading.Event()
    box: list[Any] = []

    def answer(result: Any) -> None:
        box.append(result)
        done.set()

    send(answer)
    if not done.wait(timeout):
        raise BrokerUnavailable("QMT_QUERY_TIMEOUT", f"查询{label}超时（{timeout:g} 秒），miniQMT 无响应")
    return box[0]


class QmtOfferings:
    """Mixin of easy_qmt_trader.EasyQmtTrader (on its session and timings): the two queries as broker methods."""

    def query_ipo_data(self) -> dict[str, dict[str, Any]]:
        return query_ipo_data(self._require_session(), self._timings.query_timeout)

    def query_new_purchase_limit(self) -> dict[str, int]:
        return query_new_purchase_limit(self._require_session(), self._timings.query_timeout)


LIMIT_ONLY_RULES = frozenset({Rule.IPO_SUBSCRIBE, Rule.REPO_LEND})


def price_choice(rule: Rule, configured: str) -> str:
    """A subscription is a buy at the issue price and a repo a sell at a rate: always a limit order, whatever
    account_config.json's `price_type` says for stock orders."""
    return "limit" if rule in LIMIT_ONLY_RULES else configured
