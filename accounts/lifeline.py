"""A supervised account's lifeline to its supervisor: when the supervisor process is gone (killed, crashed),
the account daemon shuts down gracefully instead of trading on as an orphan nobody can see or stop, and a
restarted supervisor finds its data dir free."""
from __future__ import annotations

import os
from typing import Callable


def process_alive(pid: int) -> bool:
    """Whether process `pid` still runs (POSIX: signal 0; Windows: its exit code is still STILL_ACTIVE)."""
    if pid <= 0:
        return False
    if os.name == "nt":
        return _windows_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    return True


def _windows_alive(pid: int) -> bool:
    import ctypes

    query_limited_information, still_active = 0x1000, 259
    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(query_limited_information, False, pid)
    if not handle:
        return False
    try:
        code = ctypes.c_ulong()
        return bool(kernel32.GetExitCodeProcess(handle, ctypes.byref(code))) and code.value == still_active
    finally:
        kernel32.CloseHandle(handle)


class Lifeline:
    """`gone()` is true once the supervisor named by SUPERVISOR_PID has exited (never for a daemon run alone)."""

    def __init__(self, supervisor_pid: int, alive: Callable[[int], bool] = process_alive):
        self.supervisor_pid = int(supervisor_pid or 0)
        self._alive = alive

    def gone(self) -> bool:
        return self.supervisor_pid > 0 and not self._alive(self.supervisor_pid)
