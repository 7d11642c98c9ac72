"""The daemon's end of the loopback TCP link to the bridge strategy: JSON lines, one reader thread, requests
answered by id with a deadline, pushed events handed to a callback. It knows nothing about orders."""
from __future__ import annotations

import itertools
import json
import logging
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

log = logging.getLogger("bigqmt")
READ_SLICE = 0.5  # the reader wakes this often to notice close(); sends time out after it too


class BridgeClosed(Exception):
    """The connection to the bridge is gone (or could not be opened)."""


class BridgeNotOpen(BridgeClosed):
    """The request was not written at all: the connection was already gone."""


class BridgeTimeout(Exception):
    """The bridge did not answer a request within its deadline: whether it acted is unknown."""


class BridgeChannel:
    """One TCP connection. `on_event(message)` and `on_closed()` run on the reader thread and must not block."""

    def __init__(self, host: str, port: int, on_event: Callable[[dict], None], on_closed: Callable[[], None]):
        self.host, self.port = host, port
        self._on_event, self._on_closed = on_event, on_closed
        self._sock: Optional[socket.socket] = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, list] = {}  # request id -> [Event, answer]
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._reader: Optional[threading.Thread] = None

    def open(self, timeout: float) -> None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except OSError as exc:
            raise BridgeClosed(str(exc)) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # JSON lines are small: no Nagle delay
        sock.settimeout(READ_SLICE)
        self._sock = sock
        self._reader = threading.Thread(target=self._read, name="bigqmt-reader", daemon=True)
        self._reader.start()

    @property
    def is_open(self) -> bool:
        return self._sock is not None and not self._closed.is_set()

    def request(self, op: str, timeout: float, **fields: Any) -> dict:
        """Send one request and wait for its answer. Raises BridgeClosed or BridgeTimeout."""
        if not self.is_open:
            raise BridgeNotOpen("未连接")
        request_id = next(self._ids)
        slot = [threading.Event(), None]
        with self._lock:
            self._waiting[request_id] = slot
        line = (json.dumps({"id": request_id, "op": op, **fields}, ensure_ascii=True) + "\n").encode("ascii")
        try:
            with self._send_lock:
                self._write(line)
            if not slot[0].wait(timeout):
                raise BridgeTimeout(f"{timeout:g} 秒内没有回答")
        except OSError as exc:  # a send that failed part-way: the bridge may or may not have the request
            self.close()
            raise BridgeClosed(str(exc)) from exc
        finally:
            with self._lock:
                self._waiting.pop(request_id, None)
        if slot[1] is None:
            raise BridgeClosed("连接在回答前断开")
        return slot[1]

    def _write(self, line: bytes) -> None:
        self._sock.sendall(line)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._release()
        with self._lock:
            waiting, self._waiting = list(self._waiting.values()), {}
        for slot in waiting:
            slot[0].set()  # answer None: closed

    def _release(self) -> None:
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    # ---- reader thread
    def _read(self) -> None:
        buffer = b""
        try:
            while not self._closed.is_set():
                try:
                    chunk = self._sock.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        self._dispatch(line)
        finally:
            was_open = not self._closed.is_set()
            self.close()
            if was_open:
                self._on_closed()

    def _dispatch(self, line: bytes) -> None:
        try:
            message = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            log.warning("大QMT 桥接发来无法解析的一行，已忽略")
            return
        if "re" in message:
            with self._lock:
                slot = self._waiting.get(message["re"])
            if slot is not None:
                slot[1] = message
                slot[0].set()
            return
        try:
            self._on_event(message)
        except Exception:  # the reader must survive a bad handler
            log.exception("处理大QMT 推送时出错")


class FolderChannel(BridgeChannel):
    """The folder transport (for QMT builds that cannot load the socket module): this connection appends its
    requests to NAME.in.jsonl in the bridge's folder and polls NAME.out.jsonl for answers and pushes. There is no
    end-of-stream: a bridge that went away is found by the deadlines and the liveness probe."""

    def __init__(self, folder: str, on_event: Callable[[dict], None], on_closed: Callable[[], None],
                 poll: float = 0.02):
        super().__init__("", 0, on_event, on_closed)
        self.folder, self.poll = Path(folder), poll
        name = f"{time.time_ns()}-{secrets.token_hex(4)}"
        self.inbound, self.outbound = self.folder / f"{name}.in.jsonl", self.folder / f"{name}.out.jsonl"

    def open(self, timeout: float) -> None:
        if not self.folder.is_dir():
            raise BridgeClosed(f"找不到桥接文件夹 {self.folder}（桥接策略运行后会创建它）")
        try:
            self.inbound.write_bytes(b"")
        except OSError as exc:
            raise BridgeClosed(str(exc)) from exc
        self._sock = self.inbound  # "open" marker for is_open
        self._reader = threading.Thread(target=self._read, name="bigqmt-folder-reader", daemon=True)
        self._reader.start()

    def _write(self, line: bytes) -> None:
        with open(self.inbound, "ab") as handle:
            handle.write(line)

    def _release(self) -> None:
        for path in (self.inbound, self.outbound):
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass  # held open by the bridge this instant (Windows); the bridge ignores it from now on

    def _read(self) -> None:
        offset, buffer = 0, b""
        while not self._closed.wait(self.poll):
            try:
                with open(self.outbound, "rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read()
            except FileNotFoundError:
                continue  # nothing answered yet
            except OSError:
                continue
            offset += len(chunk)
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    self._dispatch(line)
