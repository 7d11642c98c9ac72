/* The live stream: positions, clock and event-bus events over server-sent events read with fetch (the token
   travels in a header), the live badge, and the refresh of the orders / trades / signals / grid tabs after
   fills.
   Part of the main page (index.html): shares window.QmtApp (app_state.js) with the other parts; app.js wires them. */
(function () {
  "use strict";

  var Q = window.Qmt, A = window.QmtApp, state = A.state;
  var $ = Q.$, fmtTime = Q.fmtTime, showError = Q.showError;

  // ---- live stream -------------------------------------------------------------------------------
  var streamRefresh = null;

  function setLive(on, text) {
    var node = $("live-state");
    node.className = "live " + (on ? "on" : "off");
    node.textContent = "● " + text;
  }

  function openStream() {
    Q.eventStream(function () { return "/api/positions/stream"; }, handleEvent, function (on, text) {
      setLive(on, text.length > 30 ? "已断开，重连中…" : text);
      if (!on && text.indexOf("令牌") >= 0) showError("global-msg", { message: text });
    });
  }

  function handleEvent(event, payload) {
    if (event === "positions") {
      A.renderPositions(payload);
      A.renderAccount(payload.account);
      A.renderClock(payload.clock);
      scheduleTabRefresh();
    } else if (event === "heartbeat") {
      if (payload.time) $("clock").textContent = fmtTime(payload.time) +
        (state.status && state.status.clock.is_replay ? "（回放时钟）" : "");
    } else if (event === "bus") {  // event-bus events (watch alerts…): web/watch.js and others listen
      document.dispatchEvent(new CustomEvent("qmt:bus", { detail: payload }));
    } else if (event === "error") {
      setLive(false, payload.message);
    }
    Q.emitStream(event, payload);
  }

  /* Fills change positions: the orders, trades and signals tabs follow at most once a second. */
  function scheduleTabRefresh() {
    if (streamRefresh) return;
    streamRefresh = setTimeout(function () {
      streamRefresh = null;
      if (state.tab === "orders") A.loadOrders();
      else if (state.tab === "trades") A.loadTrades();
      else if (state.tab === "signals") A.loadSignals();
      else if (state.tab === "grid") A.loadGrid();
    }, 1000);
  }

  A.openStream = openStream;
})();
