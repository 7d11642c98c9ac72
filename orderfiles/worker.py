"""The order-file thread: the `watchdog` library wakes it when something changes in the inbox (an upload wakes
it directly), and a periodic rescan (ORDER_FILE_RESCAN_SECONDS) catches what a file-system event missed (network
drives, a dead observer). Each `run_once` is one bounded step of the intake, so the thread beats between steps
of a long file and declares its step bound to the watchdog."""
from __future__ import annotations

import logging
import threading
import time

from qmt.broker_guard import broker_step_seconds
from orderfiles.intake import OrderFileIntake
from daemon.workers import STOP_CHECK_SECONDS, Worker

log = logging.getLogger(__name__)


class OrderFileWorker(Worker):
    name = "order_files"

    def __init__(self, intake: OrderFileIntake, settings):
        self._intake = intake
        self._settings = settings
        self._changed = intake.changed  # set by the file observer and by uploads
        self._changed.set()  # scan once at start: files left from before (or a crash) are resumed
        self._observer = None

    @property
    def max_step_seconds(self) -> float:  # type: ignore[override]
        """One step of the intake, plus one line's broker call running into its deadline."""
        return float(self._settings.get("ORDER_FILE_STEP_SECONDS")) + broker_step_seconds(self._settings)

    def run_once(self) -> None:
        self._ensure_observer()
        self._changed.clear()
        if self._settings.get("ENABLE_ORDER_FILES"):
            self._intake.scan()

    def wait(self, stop: threading.Event, limit: float) -> None:
        """Until a file event or upload, the rescan interval, or when the intake has work due (the next step of
        a file, a waiting file's re-check, a file still being written reaching its stable time)."""
        timeout = self._settings.get("ORDER_FILE_RESCAN_SECONDS")
        due = self._intake.due_in() if self._settings.get("ENABLE_ORDER_FILES") else None
        if due is not None:
            timeout = min(timeout, due)
        deadline = time.monotonic() + min(limit, timeout)
        while not stop.is_set() and not self._changed.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._changed.wait(min(remaining, STOP_CHECK_SECONDS))

    def on_stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(2.0)
            self._observer = None

    def _ensure_observer(self) -> None:
        if self._observer is not None and self._observer.is_alive():
            return
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:
            log.warning("未安装 watchdog 库：委托文件目录只按 %g 秒周期扫描", self._settings.get("ORDER_FILE_RESCAN_SECONDS"))
            return
        changed = self._changed

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event) -> None:
                changed.set()

        self._intake.inbox.mkdir(parents=True, exist_ok=True)
        observer = Observer()
        observer.daemon = True
        observer.schedule(Handler(), str(self._intake.inbox), recursive=False)
        try:
            observer.start()
        except OSError as exc:  # e.g. inotify limits: the periodic rescan still works
            log.warning("无法监听委托文件目录 %s（%s），改为按周期扫描", self._intake.inbox, exc)
            return
        self._observer = observer
