"""Issue 26 item 15 (found by schemathesis with every check on): a global parameter change published while a
thread holds the per-stock parameters' lock and reads a setting must not deadlock. The ConfigStore calls its
listeners under its own lock; the per-stock cache's listener must not then wait for the per-stock lock."""
import threading
from datetime import datetime

from persistence.config_store import ConfigStore
from core.stock_params import StockParams
from persistence.storage import Database

DEADLINE = 10.0


class FixedClock:
    def now(self) -> datetime:
        return datetime(2024, 4, 8, 10, 0)


def test_a_parameter_change_while_the_per_stock_lock_reads_a_setting_does_not_deadlock(tmp_path):
    settings = ConfigStore(Database(tmp_path / "config.db"))
    in_config_lock, stock_lock_held = threading.Event(), threading.Event()

    def meet_the_reader(_changed) -> None:  # runs under the ConfigStore's lock, before the per-stock listener
        in_config_lock.set()
        assert stock_lock_held.wait(DEADLINE)

    settings.subscribe(meet_the_reader)
    params = StockParams(Database(tmp_path / "trading.db"), settings, FixedClock(), settings.journal)
    assert params.params_for("600000.SH").stop_loss_ratio == settings.get("STOP_LOSS_RATIO")
    read = []

    def reader() -> None:  # e.g. a per-stock reset: holds the per-stock lock, then reads a setting
        assert in_config_lock.wait(DEADLINE)
        with params._lock:
            stock_lock_held.set()
            read.append(settings.get("STOP_LOSS_RATIO"))

    writer = threading.Thread(target=settings.update, args=({"STOP_LOSS_RATIO": -0.07},), daemon=True)
    other = threading.Thread(target=reader, daemon=True)
    other.start()
    writer.start()
    writer.join(DEADLINE)
    other.join(DEADLINE)
    assert not writer.is_alive() and not other.is_alive(), "the change and the reader deadlocked"
    assert read == [-0.07]
    assert params.params_for("600000.SH").stop_loss_ratio == -0.07  # the cache still follows the change


def test_a_change_during_a_params_computation_is_not_cached_stale(tmp_path):
    settings = ConfigStore(Database(tmp_path / "config.db"))
    params = StockParams(Database(tmp_path / "trading.db"), settings, FixedClock(), settings.journal)
    first = params.params_for("600000.SH")
    settings.update({"STOP_LOSS_RATIO": -0.06})
    assert params.params_for("600000.SH").stop_loss_ratio == -0.06 != first.stop_loss_ratio
    settings.update({"STOP_LOSS_RATIO": -0.05})
    assert params.params_for("600036.SH").stop_loss_ratio == -0.05
