"""Pick the broker back-end the settings name: the paper account, or one of the live back-ends.

`ENABLE_SIMULATION_MODE` (the seed's switch) still wins; `BROKER` names the live back-end and `"sim"` is accepted
as a second way of saying simulation. Each live back-end module exposes
`connect_live_broker(settings, data_dir, db, *, account_config_path) -> Broker`, connected or raising
BrokerUnavailable with a Chinese reason, so the composition root never knows which one it holds."""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Optional

from core.models import BrokerUnavailable
from persistence.storage import Database

# name -> module holding its connect_live_broker; imported only when chosen (xtquant needs Windows, the bridge a socket)
LIVE_BACKENDS: dict[str, str] = {
    "miniqmt": "easy_qmt_trader",
    "bigqmt": "bigqmt.broker",
    "remote": "gateway.client",
}


def is_simulation(settings) -> bool:
    return bool(settings.get("ENABLE_SIMULATION_MODE")) or settings.get("BROKER") == "sim"


def backend_name(settings) -> str:
    return "sim" if is_simulation(settings) else str(settings.get("BROKER") or "miniqmt")


def connect_live_broker(settings, data_dir: Path, db: Optional[Database] = None, *,
                        account_config_path: Optional[Path] = None):
    """Build and connect the live back-end `BROKER` names; BrokerUnavailable (Chinese) when it cannot be used here."""
    name = backend_name(settings)
    module_name = LIVE_BACKENDS.get(name)
    if module_name is None:
        raise BrokerUnavailable("UNKNOWN_BROKER", f"未知的券商接口 BROKER = {name!r}：可选 {' / '.join(LIVE_BACKENDS)} / sim")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BrokerUnavailable("BROKER_BACKEND_MISSING", f"券商接口 {name} 无法加载（{exc}）") from exc
    return module.connect_live_broker(settings, data_dir, db, account_config_path=account_config_path)
