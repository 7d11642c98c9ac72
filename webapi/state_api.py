"""Routes of the trading state (DESIGN §8): emergency stop, pause, resume, its current value and history, and
cancelling all open orders. The state sits above every parameter layer: these routes never touch a setting."""
from __future__ import annotations

import logging
import threading
from typing import Any

from flask import Blueprint, Response, request

import webapi.requests as req
from webapi.routes import body, ctx
from webapi.requests import ApiError
from webapi.common import error_response, ok

log = logging.getLogger(__name__)

blueprint = Blueprint("api_state", __name__, url_prefix="/api")

EMERGENCY_REASON = "操作员紧急停止"
PAUSE_REASON = "操作员暂停自动交易"
EMERGENCY_CANCEL_WAIT_SECONDS = 0.5  # the stop answers within this even when the broker hangs


def _state() -> Any:
    state = ctx().trading_state
    if state is None:
        raise ApiError(404, "TRADING_STATE_UNAVAILABLE", "交易状态模块未启用")
    return state


def _reason(default: str) -> str:
    """An optional {"reason": "…"} body; no body or {} means the default reason."""
    if not request.get_data(cache=True):
        return default
    parsed = body()
    req.ensure_only(parsed, {"reason"})
    return req.parse_reason(parsed, default)


@blueprint.get("/trading-state")
def trading_state_get() -> Response:
    state = _state()
    return ok({**state.snapshot(), "history": state.history(50)})


@blueprint.post("/actions/emergency_stop")
def emergency_stop() -> Response:
    """Halt first (no new order of any kind from this instant), then cancel every open order. The answer never
    waits on the broker longer than EMERGENCY_CANCEL_WAIT_SECONDS: a hung broker call must not hold the stop."""
    state = _state()
    reason = _reason(EMERGENCY_REASON)
    state.halt(reason, "web")
    executor = ctx().executor
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def cancel_all() -> None:
        try:
            outcome["cancelled"] = executor.cancel_all()
        except Exception as exc:  # the halt stands whatever the broker does
            outcome["error"] = exc
            log.exception("紧急停止后撤单出错")
        finally:
            done.set()

    threading.Thread(target=cancel_all, name="emergency-cancel", daemon=True).start()
    if not done.wait(EMERGENCY_CANCEL_WAIT_SECONDS):
        message = "已紧急停止：不再产生新委托；券商暂未答复，撤单在后台继续进行，请在委托列表核对"
        log.warning("紧急停止完成（撤单仍在进行）")
        return ok({"trading_state": state.snapshot(), "cancelled_orders": None, "cancel_pending": True,
                   "message": message})
    if "error" in outcome:
        exc = outcome["error"]
        message = getattr(exc, "message", str(exc))
        return error_response(409, getattr(exc, "code", "CANCEL_FAILED"), f"已紧急停止，但撤单失败：{message}",
                              trading_state=state.snapshot())
    cancelled = outcome["cancelled"]
    message = f"已紧急停止：不再产生新委托，已提交撤销 {cancelled} 笔未完成委托"
    log.warning("紧急停止完成：%s", message)
    return ok({"trading_state": state.snapshot(), "cancelled_orders": cancelled, "cancel_pending": False,
               "message": message})


@blueprint.post("/actions/pause")
def pause() -> Response:
    state = _state()
    reason = _reason(PAUSE_REASON)
    if state.state.value == "halted":
        raise ApiError(409, "TRADING_HALTED", "当前处于紧急停止状态，不能改为暂停；请先确认恢复交易")
    state.pause(reason, "web")
    return ok({"trading_state": state.snapshot(), "message": "已暂停自动交易：信号继续检测并排队，手动委托不受影响"})


@blueprint.post("/actions/resume")
def resume() -> Response:
    """Leaving a stop needs an explicit {"confirm": true}: a stray request must not restart trading."""
    state = _state()
    reason = req.parse_resume(body())
    state.resume(reason, "web")
    return ok({"trading_state": state.snapshot(), "message": "已恢复交易：自动交易按「自动交易」开关执行"})


@blueprint.post("/actions/cancel_all")
def cancel_all() -> Response:
    """Cancel every open order; the trading state and the switches stay as they are."""
    if request.get_data(cache=True):
        req.ensure_only(body(), set())
    cancelled = ctx().executor.cancel_all()
    return ok({"cancelled_orders": cancelled, "message": f"已提交撤销 {cancelled} 笔未完成委托"})
