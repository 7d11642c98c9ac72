#coding:gbk
"""Bridge strategy for big QMT's strategy editor (issue 29): paste this whole file into a new Python strategy.

It runs inside QMT's embedded Python 3.6 (standard library only, ASCII only: QMT saves strategies as GBK).
It listens on a loopback TCP port (or, where QMT cannot load the socket module, watches a folder of append-only
JSON-lines files: TRANSPORT / FOLDER) for ONE daemon connection speaking JSON lines (plus side connections that
only ask "probe", e.g. the daemon's doctor), and does all its work on
QMT's strategy thread: a QMT timer (run_time) drains the socket without blocking, places orders with passorder
(the daemon's remark as both strategyName and userOrderId), cancels with cancel and then watches the order's
status (cancel's bool only means "request sent"), answers queries with get_trade_detail_data, and forwards
order_callback / deal_callback / orderError_callback as events. No thread is started: QMT's trading
functions return empty data off the strategy thread, and QMT may freeze other threads.

Wire protocol (one JSON object per line, both directions):
  daemon -> bridge  {"id": n, "op": "hello"|"ping"|"order"|"cancel"|"query"|"probe", ...}
  bridge -> daemon  {"re": n, "ok": true|false, ...}          the answer to request n
                    {"ev": "order"|"deal"|"order_error"|"cancel_result", ...}   pushed events
"""
import json
import os
import sys
import time
import types

try:
    import socket
except ImportError:  # some broker builds cannot load _socket: init() says so in the strategy log
    socket = None

BRIDGE_VERSION = "1"  # must equal bigqmt.BRIDGE_VERSION on the daemon side; bump on every protocol change
HOST = "127.0.0.1"  # loopback only: the daemon runs on this machine
PORT = 58610  # must equal BIGQMT_PORT in the daemon's config.py
TRANSPORT = "auto"  # "tcp", "folder", or "auto": tcp when this QMT can load the socket module, else folder
FOLDER = "C:/qmt_daemon_bridge"  # the folder transport's directory; must equal BIGQMT_FOLDER in the daemon's config
PUMP_PERIOD = "200nMilliSecond"  # how often QMT's timer drains the socket (100ms runs as a hot loop)
CANCEL_VERIFY_SECONDS = 10.0  # a cancel whose order is not cancelled by then is reported as not effective
MAX_OUTBOX_BYTES = 8 * 1024 * 1024  # a daemon that stops reading is disconnected, QMT is never blocked
MAX_LINE_BYTES = 1024 * 1024
SIDE_PEER_SECONDS = 30.0  # a connection that has not said hello by then is closed
MAX_SIDE_PEERS = 8
REGISTRY = "_daemon_bridge_registry"  # a module in sys.modules (survives strategy re-runs): the live bridge

OP_BUY, OP_SELL = 23, 24  # passorder opType for a stock account
ORDER_BY_SHARES = 1101
PRICE_LIMIT = 11
QUICK_NOW = 2  # quickTrade=2: send immediately (required in timers and callbacks)
TERMINAL = (53, 54, 56, 57)
CANCELLED = (53, 54)
CANCEL_PENDING = (51, 52)

ORDER_FIELDS = ("m_strOrderSysID", "m_strRemark", "m_strSource", "m_nOrderStatus", "m_nVolumeTotalOriginal",
                "m_nVolumeTraded", "m_nVolumeTotal", "m_dLimitPrice", "m_dTradedPrice", "m_nOffsetFlag", "m_nOpType",
                "m_strInstrumentID", "m_strExchangeID", "m_strInsertDate", "m_strInsertTime", "m_strCancelInfo",
                "m_strErrorMsg", "m_nErrorID")
DEAL_FIELDS = ("m_strTradeID", "m_strOrderSysID", "m_strRemark", "m_strSource", "m_dPrice", "m_nVolume",
               "m_dTradeAmount", "m_strTradeDate", "m_strTradeTime", "m_nOffsetFlag", "m_nOpType",
               "m_strInstrumentID", "m_strExchangeID", "m_dCommission", "m_dComssion")
ACCOUNT_FIELDS = ("m_dAvailable", "m_dBalance", "m_dInstrumentValue", "m_dStockValue", "m_dFrozenCash",
                  "m_dFetchBalance")
POSITION_FIELDS = ("m_strInstrumentID", "m_strExchangeID", "m_strInstrumentName", "m_nVolume", "m_nCanUseVolume",
                   "m_nFrozenVolume", "m_nOnRoadVolume", "m_dOpenPrice", "m_dMarketValue", "m_dLastPrice")
QUERY_KINDS = {"account": ("ACCOUNT", ACCOUNT_FIELDS), "positions": ("POSITION", POSITION_FIELDS),
               "orders": ("ORDER", ORDER_FIELDS), "trades": ("DEAL", DEAL_FIELDS)}

_bridge = None  # the running Bridge (module global: ContextInfo is rolled back between ticks)


def log(message):
    print("[daemon-bridge] " + message)


def plain(value):
    """A JSON-safe copy of one QMT attribute value."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def parse(line):
    """One request line as a dict ({} when unreadable)."""
    try:
        request = json.loads(line.decode("utf-8"))
    except ValueError:
        return {}
    return request if isinstance(request, dict) else {}


def row_of(obj, fields):
    return dict((name, plain(getattr(obj, name, None))) for name in fields)


class Peer(object):
    """One non-blocking connection with its unread input and unsent output."""

    def __init__(self, conn):
        conn.setblocking(False)
        try:  # small lines must go out at once (Nagle + delayed ACK would hold a push ~40-200 ms)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass
        self.conn = conn
        self.inbox = b""
        self.outbox = b""
        self.opened = time.time()

    @property
    def closed(self):
        return self.conn is None

    def read_lines(self):
        """Complete lines received so far; at end of stream the connection is closed and its rest discarded."""
        while self.conn is not None:
            try:
                chunk = self.conn.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.close()
                return []
            if not chunk:
                self.close()  # the peer went away: its requests not yet handled are never executed
                return []
            self.inbox += chunk
            if len(self.inbox) > MAX_LINE_BYTES and b"\n" not in self.inbox:
                self.close()
                return []
        lines = self.inbox.split(b"\n")
        self.inbox = lines.pop()
        return [line for line in lines if line.strip()]

    def send(self, message):
        if self.conn is None:
            return
        self.outbox += (json.dumps(message, separators=(",", ":")) + "\n").encode("ascii")
        if len(self.outbox) > MAX_OUTBOX_BYTES:
            log("a client is not reading; connection closed")
            self.close()
            return
        self.flush()

    def flush(self):
        while self.conn is not None and self.outbox:
            try:
                sent = self.conn.send(self.outbox)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.close()
                return
            self.outbox = self.outbox[sent:]

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
        self.conn = None
        self.inbox = b""
        self.outbox = b""


class Endpoint(object):
    """Non-blocking loopback TCP server. A new connection waits until its first line: "hello" makes it THE
    daemon connection, replacing the older one, whose unread requests are discarded (so a reconnected daemon
    never sees an old request executed after it asked what was placed); "probe" lines (the doctor) are answered
    on the side and never disturb the daemon's connection."""

    def __init__(self, host, port):
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if hasattr(socket, "SO_EXCLUSIVEADDRUSE"):  # Windows: no other program may take the port over
            self.server.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
        else:  # elsewhere: rebinding after a restart must not wait for old connections' TIME_WAIT
            self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.server.bind((host, port))
        except OSError:
            self.server.close()
            raise
        self.server.listen(8)
        self.server.setblocking(False)
        self.main = None  # the daemon's Peer
        self.waiting = []  # Peers that have not said hello (probes, or a daemon about to)

    def accept_all(self):
        while True:
            try:
                conn, _addr = self.server.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            self.waiting.append(Peer(conn))
        self.expire_waiting()

    def expire_waiting(self):
        now = time.time()
        for peer in list(self.waiting):
            if peer.closed or now - peer.opened > SIDE_PEER_SECONDS or len(self.waiting) > MAX_SIDE_PEERS:
                peer.close()
                self.waiting.remove(peer)

    def promote(self, peer, lines):
        """`peer` said hello: it becomes the daemon connection; `lines` (hello first) are handled on it next."""
        self.drop()
        self.waiting.remove(peer)
        peer.inbox = b"\n".join(lines) + b"\n" + peer.inbox
        self.main = peer

    def send(self, message):
        if self.main is not None:
            self.main.send(message)

    def flush(self):
        for peer in [self.main] + self.waiting:
            if peer is not None:
                peer.flush()

    def drop(self):
        if self.main is not None:
            self.main.close()
        self.main = None

    def close(self):
        self.drop()
        for peer in self.waiting:
            peer.close()
        self.waiting = []
        try:
            self.server.close()
        except OSError:
            pass


class FilePeer(Peer):
    """The folder transport's connection: the daemon appends request lines to NAME.in.jsonl, the bridge appends
    answer and event lines to NAME.out.jsonl (append-only files, no renames: nothing for Windows to lock)."""

    def __init__(self, inbound, outbound):
        self.conn = inbound  # "open" while not None, as for a socket Peer
        self.outbound = outbound
        self.offset = 0
        self.inbox = b""
        self.outbox = b""
        self.opened = time.time()

    def read_lines(self):
        if self.conn is None:
            return []
        try:
            with open(self.conn, "rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read(MAX_LINE_BYTES)
        except (IOError, OSError):  # the daemon deleted it: that link is closed
            self.close()
            return []
        self.offset += len(chunk)
        self.inbox += chunk
        lines = self.inbox.split(b"\n")
        self.inbox = lines.pop()
        return [line for line in lines if line.strip()]

    def flush(self):
        if self.conn is None or not self.outbox:
            return
        try:
            with open(self.outbound, "ab") as handle:
                handle.write(self.outbox)
            self.outbox = b""
        except (IOError, OSError):  # retried at the next pump
            pass

    def close(self):
        self.conn = None
        self.inbox = b""
        self.outbox = b""
        _remove_quietly(self.outbound)


class FolderEndpoint(Endpoint):
    """The folder transport: a new NAME.in.jsonl is a new connection. Files already there when the bridge starts
    belong to an earlier run and are never read (their requests must not run twice)."""

    def __init__(self, folder):
        if not os.path.isdir(folder):
            os.makedirs(folder)
        self.folder = folder
        self.main = None
        self.waiting = []
        self.known = set()
        for name in os.listdir(folder):
            self.known.add(name)
            _remove_quietly(os.path.join(folder, name))

    def accept_all(self):
        for name in sorted(os.listdir(self.folder)):
            if name.endswith(".in.jsonl") and name not in self.known:
                self.known.add(name)
                stem = name[:-len(".in.jsonl")]
                self.waiting.append(FilePeer(os.path.join(self.folder, name),
                                             os.path.join(self.folder, stem + ".out.jsonl")))
        self.expire_waiting()

    def close(self):
        self.drop()
        for peer in self.waiting:
            peer.close()
        self.waiting = []


def _remove_quietly(path):
    try:
        os.remove(path)
    except (IOError, OSError):
        pass


class Bridge(object):
    """The daemon's hands inside QMT. Every method runs on QMT's strategy thread."""

    def __init__(self, account_id, host, port):
        self.account_id = account_id
        self.address = (host, port)
        self.endpoint = None  # bound by the first pump that can (a port still held by a dying run is retried)
        self.bind_error = ""
        self.boot = "%d-%d" % (int(time.time() * 1000), id(self) % 100000)
        self.placed = {}  # remark -> time passorder was called for it (this boot): never placed twice
        self.watched_cancels = {}  # sysid -> deadline (time.time()) of its cancel verification
        self.verified = False  # the connection's hello carried our version

    # ---- the timer
    def listen(self):
        if self.endpoint is not None:
            return True
        use_folder = TRANSPORT == "folder" or (TRANSPORT == "auto" and socket is None)
        try:
            self.endpoint = FolderEndpoint(FOLDER) if use_folder else Endpoint(self.address[0], self.address[1])
        except (IOError, OSError) as exc:
            if str(exc) != self.bind_error:
                log("cannot listen yet (%s); retrying" % exc)
            self.bind_error = str(exc)
            return False
        where = ("folder " + FOLDER) if use_folder else ("%s:%d" % (self.address[0], self.port()))
        log("listening on %s, version %s, account bound: %s" % (where, BRIDGE_VERSION, bool(self.account_id)))
        return True

    def port(self):
        server = getattr(self.endpoint, "server", None)
        return server.getsockname()[1] if server is not None else 0

    def pump(self, C):
        if not self.listen():
            return
        endpoint = self.endpoint
        endpoint.accept_all()
        for peer in list(endpoint.waiting):
            self.serve_waiting(peer)
        if endpoint.main is not None:
            for line in endpoint.main.read_lines():
                self.handle_line(line, C)
            if endpoint.main.closed:
                endpoint.main = None
        self.check_cancels()
        endpoint.flush()

    def serve_waiting(self, peer):
        lines = peer.read_lines()
        for index, line in enumerate(lines):
            request = parse(line)
            if request.get("op") == "hello":
                self.endpoint.promote(peer, lines[index:])
                self.verified = False
                return
            if request.get("op") == "probe":
                answer = self.probe()
                answer["re"] = request.get("id")
                peer.send(answer)
            else:
                peer.send({"re": request.get("id"), "ok": False, "error": "hello with a matching version first"})
        if peer.closed and peer in self.endpoint.waiting:
            self.endpoint.waiting.remove(peer)

    def handle_line(self, line, C):
        request = parse(line)
        rid, op = request.get("id"), request.get("op")
        if op is None:
            log("unreadable request ignored")
            return
        try:
            if op == "hello":
                answer = self.hello(request)
            elif op == "probe":
                answer = self.probe()
            elif not self.verified:
                answer = {"ok": False, "error": "hello with a matching version first"}
            elif op == "ping":
                answer = {"ok": True, "now": time.time(), "boot": self.boot}
            elif op == "order":
                answer = self.order(request, C)
            elif op == "cancel":
                answer = self.cancel(request, C)
            elif op == "query":
                answer = self.query(request)
            else:
                answer = {"ok": False, "error": "unknown op %s" % op}
        except Exception as exc:  # an exception escaping the timer would stop the strategy
            answer = {"ok": False, "error": "%s: %s" % (type(exc).__name__, exc), "unknown": op == "order"}
        answer["re"] = rid
        self.send(answer)

    # ---- requests
    def probe(self):
        main = self.endpoint.main
        return {"ok": True, "version": BRIDGE_VERSION, "boot": self.boot, "account": self.account_id,
                "now": time.time(), "daemon_connected": main is not None and not main.closed and self.verified}

    def hello(self, request):
        if str(request.get("version")) != BRIDGE_VERSION:
            self.verified = False
            return {"ok": False, "error": "version", "version": BRIDGE_VERSION}
        self.verified = True
        return {"ok": True, "version": BRIDGE_VERSION, "boot": self.boot, "account": self.account_id,
                "placed": sorted(self.placed), "now": time.time()}

    def order(self, request, C):
        remark = str(request["remark"])
        if remark in self.placed:
            return {"ok": True, "duplicate": True}  # never passorder twice for one remark
        op_type = OP_BUY if request["side"] == "buy" else OP_SELL
        self.placed[remark] = time.time()  # before the call: a raising passorder may still have sent
        passorder(op_type, ORDER_BY_SHARES, self.account_id, str(request["code"]),
                  int(request.get("price_type", PRICE_LIMIT)), float(request["price"]), int(request["volume"]),
                  remark, QUICK_NOW, remark, C)
        return {"ok": True}

    def cancel(self, request, C):
        sysid = str(request["sysid"])
        sent = cancel(sysid, self.account_id, "STOCK", C)
        self.watched_cancels[sysid] = time.time() + float(request.get("verify_seconds", CANCEL_VERIFY_SECONDS))
        return {"ok": True, "sent": bool(sent)}  # only "request sent": the outcome is a cancel_result event

    def query(self, request):
        kind, fields = QUERY_KINDS[request["what"]]
        rows = get_trade_detail_data(self.account_id, "STOCK", kind) or []
        return {"ok": True, "rows": [row_of(obj, fields) for obj in rows]}

    # ---- cancel verification: only the order's status says whether a cancel worked
    def check_cancels(self):
        if not self.watched_cancels:
            return
        now = time.time()
        for sysid, deadline in list(self.watched_cancels.items()):
            found = get_value_by_order_id(sysid, self.account_id, "STOCK", "ORDER")
            status = getattr(found, "m_nOrderStatus", None) if found is not None else None
            if status in TERMINAL:
                del self.watched_cancels[sysid]
                self.send({"ev": "cancel_result", "sysid": sysid, "cancelled": status in CANCELLED,
                                    "row": row_of(found, ORDER_FIELDS)})
            elif now >= deadline and status not in CANCEL_PENDING:
                del self.watched_cancels[sysid]
                self.send({"ev": "cancel_result", "sysid": sysid, "cancelled": False,
                                    "row": row_of(found, ORDER_FIELDS) if found is not None else None,
                                    "error": "order not found" if found is None else "cancel not effective"})

    # ---- callbacks
    def forward(self, event, obj, fields):
        self.send({"ev": event, "row": row_of(obj, fields)})

    def forward_error(self, args, message):
        self.send({"ev": "order_error", "msg": plain(message),
                            "args": row_of(args, ("opType", "orderType", "accountID", "orderCode", "prType",
                                                  "modelPrice", "modelVolume", "strategyName"))})

    def send(self, message):
        if self.endpoint is not None:
            self.endpoint.send(message)

    def close(self):
        if self.endpoint is not None:
            self.endpoint.close()


def _registry():
    registry = sys.modules.get(REGISTRY)
    if registry is None:
        registry = types.ModuleType(REGISTRY)
        registry.bridge = None
        sys.modules[REGISTRY] = registry
    return registry


def _start(C):
    """Idempotent: QMT re-runs init on auto-initialisation; the previous run's listening socket is closed first."""
    global _bridge
    registry = _registry()
    if registry.bridge is not None:
        registry.bridge.close()
        registry.bridge = None
    if socket is None and TRANSPORT == "tcp":
        log("this QMT build cannot load the socket module: set TRANSPORT = \"folder\" (and BIGQMT_TRANSPORT)")
        return
    _bridge = Bridge(str(globals().get("account", "")), HOST, PORT)
    registry.bridge = _bridge
    _bridge.listen()


def _guarded(what, action):
    try:
        action()
    except Exception as exc:  # an escaping exception stops the strategy: log and keep running
        log("%s failed: %s: %s" % (what, type(exc).__name__, exc))


# ---- QMT entry points ------------------------------------------------------------------------------------------
def init(C):
    bound = globals().get("account")  # injected by QMT for the account bound to the strategy
    if bound:
        C.set_account(bound)  # without it QMT pushes no order/deal callbacks
    else:
        log("no account bound: run this strategy as a trading strategy with the account selected")
    _start(C)
    C.run_time("bridge_pump", PUMP_PERIOD, "2019-01-01 09:30:00")


def bridge_pump(C):
    if _bridge is not None:
        _guarded("pump", lambda: _bridge.pump(C))


def handlebar(C):
    if _bridge is not None and C.is_last_bar():
        _guarded("pump", lambda: _bridge.pump(C))


# account_callback / position_callback are deliberately not defined: the daemon queries asset and positions when
# it needs them (QMT pushes the account about every 5 s, which would only be noise on the link).
def order_callback(C, orderInfo):
    if _bridge is not None:
        _guarded("order_callback", lambda: _bridge.forward("order", orderInfo, ORDER_FIELDS))


def deal_callback(C, dealInfo):
    if _bridge is not None:
        _guarded("deal_callback", lambda: _bridge.forward("deal", dealInfo, DEAL_FIELDS))


def orderError_callback(C, orderArgs, errMsg):
    if _bridge is not None:
        _guarded("orderError_callback", lambda: _bridge.forward_error(orderArgs, errMsg))


def stop(C):
    global _bridge
    if _bridge is not None:
        _bridge.close()
        _registry().bridge = None
        _bridge = None
