"""Issue 25 follow-up (bench: stop-losses detected only on the 3 s poll in live mode): a stock that just became a
position was put on the push subscription only at the data thread's next poll (up to MONITOR_INTERVAL later), so
its pushed crossing never arrived and the monitor woke only on the poll. Now the data thread refreshes the
watchlist every second between polls, and a newly subscribed code is quoted at once."""
from __future__ import annotations

from daemon.daemon_workers import DataWorker
from test_data_xtquant import make_manager, service, tick  # noqa: F401 (fixture)
from data_test_support import no_network, xt_stand_in  # noqa: F401 (fixtures)
from trading_support import FakeTime


def test_a_new_position_is_subscribed_and_quoted_within_a_second_between_polls(tmp_path, service):
    manager = make_manager(tmp_path)
    try:
        manager.set_watchlist(["000001.SZ"])
        watch = ["000001.SZ"]
        now = FakeTime()
        worker = DataWorker(manager, lambda: list(watch), now=now)
        assert worker.is_due()
        worker.run_once()  # a poll: the next one MONITOR_INTERVAL (3 s) away
        polls = [c for c in service.calls if c[0] == "get_full_tick"]
        watch.append("600000.SH")  # a position appeared
        now.value += 1.0
        assert worker.is_due()  # woken for the watchlist, not for a poll
        version = manager.hub.version
        worker.run_once()
        assert service.calls.count(("subscribe_whole_quote", ("000001.SZ", "600000.SH"))) == 1
        assert manager.hub.version == version + 1 and manager.hub.latest("600000.SH").price == 13.9  # quoted at once
        assert [c for c in service.calls if c[0] == "get_full_tick"] == polls + [("get_full_tick", ("600000.SH",))]
        now.value += 0.5
        assert not worker.is_due()
    finally:
        manager.close()


class SleepingSource:
    """A data manager outside sessions: each step asks to sleep until the next session (600 s)."""

    def __init__(self):
        self.watchlists: list[list[str]] = []
        self.steps = 0

    def set_watchlist(self, codes) -> None:
        self.watchlists.append(list(codes))

    def run_once(self) -> float:
        self.steps += 1
        return 600.0


def test_outside_sessions_the_data_thread_sleeps_without_watchlist_wakes():
    data, now = SleepingSource(), FakeTime()
    worker = DataWorker(data, lambda: ["600000.SH"], now=now)
    worker.run_once()
    now.value += 1.0
    assert not worker.is_due()  # no refresh wake while the source sleeps until the next session
    now.value += 599.0
    assert worker.is_due()
    worker.run_once()
    assert (data.steps, data.watchlists) == (2, [["600000.SH"], ["600000.SH"]])
