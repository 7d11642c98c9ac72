"""Stopping a waitress server that runs in a thread of ours, shared by the gateway's server and the web API's
(webapi.server): waitress's loop is not thread-safe, so every socket change runs in its own thread through its
trigger. Standard library and waitress only."""
from __future__ import annotations

import threading


def shut_down(server, timeout: float) -> None:
    """Stop listening, let running requests finish (up to `timeout` s), then close every connection and the
    trigger. The caller joins the thread that ran `server.run()`."""
    from waitress import wasyncore

    server.trigger.pull_trigger(lambda: wasyncore.dispatcher.close(server))  # the listening socket only
    server.task_dispatcher.shutdown(timeout=timeout)
    closed = threading.Event()

    def close_connections() -> None:
        for channel in list(server._map.values()):
            if channel is not server.trigger:
                channel.handle_close()
        server.trigger.close()
        closed.set()

    try:
        server.trigger.pull_trigger(close_connections)
    except OSError:
        # The loop may run the queued thunk (closing the trigger) before our own wake-up byte is written.
        if not closed.is_set():
            raise
