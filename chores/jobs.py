"""The two scheduled chores (jobs.runner `Job`s, off by default, live accounts only): at IPO_SUBSCRIBE_TIME the
allotments (中签) of earlier subscriptions are looked for and today's offerings subscribed with the whole quota; at
REPO_TIME the spare cash is lent overnight by reverse repo. Every order goes through the executor's order path
(journaled before it is sent, source 「申购与逆回购」); every outcome is a record, an event and a result line."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Callable, Mapping, Optional, Sequence

import chores.rules as rules
from chores.store import ALLOTMENT, FOUND, REFUSED, REPO, SENT, SKIPPED, SUBSCRIBE, ChoreRecord, ChoreStore
from core.events import EventBus, EventKind
from core.models import OrderStatus, Rule, Side, TradingError
from jobs.runner import Job
from jobs.schedule import CatchUp

log = logging.getLogger(__name__)

SIMULATION_NOTE = "新股新债申购和国债逆回购只在实盘账户运行（需要券商的申购额度、新股列表和逆回购报价）；模拟账户不执行"
OFF = "未开启（{key}），未做任何操作"

ORDER_STATUS_LABELS = {
    OrderStatus.PENDING_SUBMIT: "待发送", OrderStatus.SUBMITTED: "已发送", OrderStatus.OPEN: "已报",
    OrderStatus.PARTIALLY_FILLED: "部分成交", OrderStatus.CANCEL_PENDING: "撤单中", OrderStatus.CANCELLED: "已撤/已失效",
    OrderStatus.FILLED: "已成交", OrderStatus.REJECTED: "被拒绝", OrderStatus.UNKNOWN: "结果未知",
}
RepoRates = Callable[[Sequence[str]], Mapping[str, Optional[float]]]


@dataclass
class ChoreJobs:
    clock: object  # market.clock.Clock (calendar, now, today)
    settings: object
    executor: object  # place_chore, open_orders, account, journal
    broker: object  # query_ipo_data(), query_new_purchase_limit(), query_positions() (live)
    store: ChoreStore
    bus: EventBus
    signals: object  # core.signal_store.SignalStore: pending(), executing()
    watch: object  # watch.store.WatchStore: active()
    repo_rates: RepoRates  # code → best bid rate (%), None without a bid
    live: bool = False

    def jobs(self) -> list[Job]:
        return [Job("ipo_subscribe", "新股新债申购与中签检查", "IPO_SUBSCRIBE_TIME", CatchUp.SAME_SESSION, self.subscribe),
                Job("repo", "隔夜国债逆回购", "REPO_TIME", CatchUp.SAME_SESSION, self.lend)]

    # ---- new shares and new bonds
    def subscribe(self, day: date) -> str:
        if not self.settings.get("ENABLE_IPO_SUBSCRIBE"):
            return OFF.format(key="ENABLE_IPO_SUBSCRIBE")
        if not self.live:
            return SIMULATION_NOTE
        won = self.check_allotments(day)
        offerings = rules.parse_offerings(self._broker_call("query_ipo_data"))
        quota = self._broker_call("query_new_purchase_limit") if offerings else {}
        plans = rules.plan_subscriptions(offerings, quota, day, self.settings.get("IPO_SUBSCRIBE_KINDS"),
                                         self.settings.get("IPO_SUBSCRIBE_EXCLUDE"))
        records = [self._subscribe_one(day, plan) for plan in plans]
        lines = [_subscription_line(r) for r in records]
        quota_text = "，".join(f"{k} {v}" for k, v in sorted(quota.items())) or "—"
        message = (f"新股新债申购 {day}：今日 {len(offerings)} 只，已委托 {sum(r.status == SENT for r in records)} 只"
                   f"（额度：{quota_text}）" + ("；" + "；".join(lines) if lines else ""))
        if won:
            message += f"；新中签 {len(won)} 只"
        if offerings:  # a day without offerings is only the job's result line, not a notification
            self.bus.emit(EventKind.CHORES, message, day=day.isoformat(), chore=SUBSCRIBE)
        return message

    def check_allotments(self, day: date) -> list[rules.Allotment]:
        """Subscriptions of the last IPO_ALLOTMENT_DAYS trading days whose code or name now shows in the broker's
        positions: each is recorded once, with a notification of the payment due by the end of T+2."""
        first = self._trading_days_back(day, int(self.settings.get("IPO_ALLOTMENT_DAYS")))
        subscribed = [(r.day, r.code, r.name, r.price) for r in self.store.subscriptions_since(first) if r.day < day]
        if not subscribed:
            return []
        known = {(r.day, r.code) for r in self.store.allotments_since(first)}
        found = rules.find_allotments(subscribed, self._broker_call("query_positions"), known,
                                      self.clock.calendar.is_trading_day)
        cash = self.executor.account().cash if found else 0.0
        for allotment in found:
            self.store.record(ChoreRecord(ALLOTMENT, allotment.subscription_day, allotment.code, allotment.name,
                                          allotment.volume, allotment.price, allotment.amount, FOUND,
                                          client_id="", due_day=allotment.due_day))
            short = "" if cash >= allotment.amount else f"；当前可用资金 {cash:.2f} 元不足，请及时补足，否则视为放弃认购"
            self.bus.emit(EventKind.CHORES, f"中签：{allotment.name or allotment.code}（{allotment.code}）{allotment.volume}"
                                            f"，应缴款 {allotment.amount:.2f} 元，请在 {allotment.due_day} 16:00 前保证账户"
                                            f"可用资金足额{short}", stock_code=allotment.code, chore=ALLOTMENT,
                          amount=allotment.amount, due_day=allotment.due_day.isoformat())
            log.info("中签 %s %s %d，应缴款 %.2f 元，缴款日 %s", allotment.code, allotment.name, allotment.volume,
                     allotment.amount, allotment.due_day)
        return found

    def _subscribe_one(self, day: date, plan: rules.SubscriptionPlan) -> ChoreRecord:
        offering = plan.offering
        base = dict(kind=SUBSCRIBE, day=day, code=offering.code, name=offering.name, volume=plan.volume,
                    price=offering.issue_price, amount=plan.amount)
        if plan.volume <= 0:
            return self.store.record(ChoreRecord(**base, status=SKIPPED, reason=plan.reason))
        try:
            order = self.executor.place_chore(offering.code, Side.BUY, plan.volume, offering.issue_price,
                                              Rule.IPO_SUBSCRIBE, idempotency_key=f"chores:ipo:{day}:{offering.code}")
        except TradingError as exc:
            log.warning("申购 %s %s 被拒绝：%s", offering.code, offering.name, exc.message)
            return self.store.record(ChoreRecord(**base, status=REFUSED, reason=exc.message))
        log.info("已申购 %s %s %d @ %g（委托 %s）", offering.code, offering.name, plan.volume, offering.issue_price,
                 order.client_id)
        return self.store.record(ChoreRecord(**base, status=SENT, client_id=order.client_id))

    # ---- overnight reverse repo
    def lend(self, day: date) -> str:
        if not self.settings.get("ENABLE_REPO"):
            return OFF.format(key="ENABLE_REPO")
        if not self.live:
            return SIMULATION_NOTE
        done = [r for r in self.store.on_day(day) if r.kind == REPO and r.status == SENT]
        if done:
            return f"国债逆回购 {day}：今日已出借 {done[0].code} {done[0].amount:.0f} 元，不再重复"
        codes = list(self.settings.get("REPO_CODES"))
        unknown = rules.unknown_repo_codes(codes)
        if unknown or not codes:
            return self._repo_skipped(day, "", f"REPO_CODES 中有不认识的逆回购代码：{'、'.join(unknown) or '（空）'}"
                                              f"（可用：{'、'.join(rules.REPO_TENOR_DAYS)}）", status=REFUSED)
        amount = self.lendable(day)
        if amount.amount <= 0:
            return self._repo_skipped(day, "", f"可出借资金不足 {rules.REPO_STEP_CASH} 元（{_reserve_text(amount)}）")
        chosen = rules.choose_repo(self.repo_rates(codes), codes)
        if chosen is None:
            return self._repo_skipped(day, "", f"{'、'.join(codes)} 都没有买方报价，未出借")
        code, rate = chosen
        base = dict(kind=REPO, day=day, code=code, name=f"{rules.REPO_TENOR_DAYS[code]}天期逆回购",
                    volume=amount.volume, price=rate, amount=float(amount.amount))
        try:
            order = self.executor.place_chore(code, Side.SELL, amount.volume, rate, Rule.REPO_LEND,
                                              idempotency_key=f"chores:repo:{day}")
        except TradingError as exc:
            record = self.store.record(ChoreRecord(**base, status=REFUSED, reason=exc.message))
            message = f"国债逆回购 {day}：{code} 出借 {amount.amount} 元被拒绝：{exc.message}"
            self.bus.emit(EventKind.CHORES, message, stock_code=code, chore=REPO)
            return message
        record = self.store.record(ChoreRecord(**base, status=SENT, client_id=order.client_id,
                                               reason=_reserve_text(amount)))
        days = rules.repo_days(day, rules.REPO_TENOR_DAYS[code], self.clock.calendar.is_trading_day)
        interest = rules.repo_interest(record.amount, rate, days)
        message = (f"国债逆回购 {day}：{code} 年化 {rate:g}% 出借 {amount.amount} 元（{amount.volume} 张），占款 {days} 天，"
                   f"预计利息 {interest:.2f} 元；{_reserve_text(amount)}")
        self.bus.emit(EventKind.CHORES, message, stock_code=code, chore=REPO, amount=amount.amount, rate=rate)
        return message

    def lendable(self, day: date) -> rules.RepoAmount:
        """The repo's amount from the account and what it must keep: open buy orders, planned buys (queued buy
        signals and active watch-task buys, chores.rules.planned_buy_cash), allotment payments due."""
        asset = self.executor.account()
        open_need = sum(e.remaining * e.price for e in self.executor.journal.open_entries(side=Side.BUY)
                        if e.origin_rule is not Rule.IPO_SUBSCRIBE)  # a subscription freezes no cash on T (§7)
        signals = [*self.signals.pending(), *self.signals.executing()]
        planned = rules.planned_buy_cash(signals, self.watch.active() if self.watch is not None else [])
        return rules.repo_amount(asset.cash, float(self.settings.get("REPO_KEEP_CASH")), open_need, asset.frozen_cash,
                                 planned, self.store.payments_due(day))

    def _repo_skipped(self, day: date, code: str, reason: str, status: str = SKIPPED) -> str:
        self.store.record(ChoreRecord(REPO, day, code, "", 0, 0.0, 0.0, status, reason))
        message = f"国债逆回购 {day}：未出借，{reason}"
        if status == REFUSED:
            self.bus.emit(EventKind.CHORES, message, chore=REPO)
        return message

    # ---- what the page and the daily report show
    def view(self, day: date) -> dict:
        """Today's subscriptions (with their order's state: a broker refusal shows as 被拒绝 with its reason),
        the allotments found today or still to be paid, the repo, and whether the chores can run here."""
        records = [self._with_order(r) for r in self.store.on_day(day)]
        due = [r.to_dict() for r in self.store.allotments_since(day - timedelta(days=31))
               if r.due_day is not None and r.due_day >= day]
        seen = {(row["day"], row["code"]) for row in records if row["kind"] == ALLOTMENT}
        return {
            "day": day.isoformat(), "live": self.live, "note": "" if self.live else SIMULATION_NOTE,
            "ipo_enabled": bool(self.settings.get("ENABLE_IPO_SUBSCRIBE")),
            "repo_enabled": bool(self.settings.get("ENABLE_REPO")),
            "ipo_time": self.settings.get("IPO_SUBSCRIBE_TIME"), "repo_time": self.settings.get("REPO_TIME"),
            "subscriptions": [r for r in records if r["kind"] == SUBSCRIBE],
            "allotments": [r for r in records if r["kind"] == ALLOTMENT]
            + [r for r in due if (r["day"], r["code"]) not in seen],
            "repo": [r for r in records if r["kind"] == REPO],
            "payments_due": self.store.payments_due(day),
            "summary": self.summary(day),
        }

    def summary(self, day: date) -> str:
        """One line for the daily report: 申购 n 只（…）；中签 …；逆回购 …; empty when the chores did nothing."""
        rows = [self._with_order(r) for r in self.store.on_day(day)]
        parts = []
        subscribed = [r for r in rows if r["kind"] == SUBSCRIBE and r["status"] == SENT]
        refused = [r for r in rows if r["kind"] == SUBSCRIBE and r["status"] == REFUSED]
        if subscribed or refused:
            parts.append(f"申购 {len(subscribed)} 只" + (f"（{'、'.join(r['name'] or r['code'] for r in subscribed)}）"
                                                        if subscribed else "")
                         + (f"，被拒绝 {len(refused)} 只" if refused else ""))
        for r in rows:
            if r["kind"] == ALLOTMENT:
                parts.append(f"中签 {r['name'] or r['code']} {r['volume']}，应缴款 {r['amount']:.2f} 元（{r['due_day']} 前）")
            elif r["kind"] == REPO and r["status"] == SENT:
                state = f"（{r['order_status_label']}）" if r["order_status_label"] else ""
                parts.append(f"逆回购 {r['code']} 年化 {r['price']:g}% 出借 {r['amount']:.0f} 元{state}")
            elif r["kind"] == REPO:
                parts.append(f"逆回购未出借：{r['reason']}")
        return "；".join(parts)

    def _with_order(self, record: ChoreRecord) -> dict:
        """The record with the state of its order in the journal (a broker's refusal arrives after the send)."""
        row = record.to_dict()
        entry = self.executor.journal.get(record.client_id) if record.client_id else None
        row["order_status"] = entry.status.value if entry else ""
        row["order_status_label"] = ORDER_STATUS_LABELS.get(entry.status, entry.status.value) if entry else ""
        row["filled_volume"] = entry.filled_volume if entry else 0
        if entry is not None and entry.status is OrderStatus.REJECTED:
            row.update(status=REFUSED, status_label="被拒绝", reason=entry.reason)
        return row

    # ---- helpers
    def _broker_call(self, name: str):
        """A broker query through the broker guard's deadline when there is one (qmt.broker_guard.BrokerGuard)."""
        method = getattr(self.broker, name, None)
        if method is None:
            raise TradingError("CHORES_UNSUPPORTED", f"当前券商接口不支持 {name}，无法执行申购")
        call = getattr(self.broker, "call", None)
        inner = getattr(self.broker, "inner", None)
        if call is not None and inner is not None:
            return call(name, getattr(inner, name))
        return method()

    def _trading_days_back(self, day: date, count: int) -> date:
        first, counted = day, 0
        while counted < count:
            first -= timedelta(days=1)
            if self.clock.calendar.is_trading_day(first):
                counted += 1
        return first


def _subscription_line(record: ChoreRecord) -> str:
    what = f"{record.name or record.code}（{record.code}）"
    if record.status == SENT:
        return f"{what} 申购 {record.volume} @ {record.price:g}"
    if record.status == REFUSED:
        return f"{what} 申购被拒绝：{record.reason}"
    return f"{what} 未申购：{record.reason}"


def _reserve_text(amount: rules.RepoAmount) -> str:
    return (f"可用资金 {amount.cash:.2f} 元，保留 {amount.keep_cash:.2f} 元，未成交买单 {amount.open_buys:.2f} 元，"
            f"次日计划买入 {amount.planned_buys:.2f} 元，中签待缴款 {amount.payments_due:.2f} 元")
