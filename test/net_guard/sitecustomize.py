"""Test-only network guard, loaded at start-up by the interpreter of a daemon under fuzzing (its directory is put
first on PYTHONPATH by test_web_schemathesis): every name lookup and connection that is not loopback is refused,
so nothing a fuzzer posts (a notification channel URL such as json://some.host/) can make the daemon contact
another host. Refusals are listed in the file named by NET_GUARD_LOG, after a first line saying the guard is on."""
import errno
import ipaddress
import os
import socket

_LOG = os.environ.get("NET_GUARD_LOG", "")
LOCAL_NAMES = {"", "localhost"}


def _note(line: str) -> None:
    if _LOG:
        with open(_LOG, "a", encoding="utf-8") as out:
            out.write(line + "\n")


def _loopback(host) -> bool:
    if host is None:  # a lookup for a local bind
        return True
    text = host.decode("ascii", "replace") if isinstance(host, bytes) else str(host)
    if text.lower() in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(text.split("%")[0]).is_loopback
    except ValueError:
        return False


def _refuse(what: str, host) -> None:
    _note(f"refused {what} {host!r}")
    raise OSError(errno.ECONNREFUSED, f"测试网络隔离：拒绝访问非本机地址 {host!r}")


def _guard_lookup(original):
    def lookup(host, *args, **kwargs):
        if not _loopback(host):
            _refuse(original.__name__, host)
        return original(host, *args, **kwargs)
    return lookup


def _guard_connect(original):
    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            _refuse("connect", address[0])
        return original(self, address)
    return connect


for _name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr"):
    setattr(socket, _name, _guard_lookup(getattr(socket, _name)))
socket.socket.connect = _guard_connect(socket.socket.connect)
socket.socket.connect_ex = _guard_connect(socket.socket.connect_ex)
_note(f"guard active in pid {os.getpid()}")
