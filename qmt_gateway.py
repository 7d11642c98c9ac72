"""QMT 远程网关（issue 30）：`python qmt_gateway.py` 在装有 QMT 的 Windows 机器上运行，把 miniQMT（或大QMT桥接）的
交易接口、可续传的事件流和行情通过签名的 HTTP 提供给远程的守护进程（BROKER = "remote"）。The program is gateway/cli.py."""
from __future__ import annotations

import sys

from gateway.cli import main

if __name__ == "__main__":
    sys.exit(main())
