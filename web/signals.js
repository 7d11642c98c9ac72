/* The signals tab: pending signals (执行 / 忽略) and signal history.
   Part of the main page (index.html): shares window.QmtApp (app_state.js) with the other parts; app.js wires them. */
(function () {
  "use strict";

  var Q = window.Qmt, A = window.QmtApp, state = A.state;
  var $ = Q.$, make = Q.make, cell = Q.cell, clear = Q.clear, fmtPrice = Q.fmtPrice, fmtInt = Q.fmtInt;
  var fmtTime = Q.fmtTime, show = Q.show, showError = Q.showError, get = Q.get, post = Q.post;
  var confirmDialog = Q.confirmDialog;

  // ---- signals -----------------------------------------------------------------------------------
  function loadSignals() {
    var auto = state.status && state.status.switches.ENABLE_AUTO_TRADING &&
      (!state.status.trading_state || state.status.trading_state.state === "running");
    get("/api/signals/pending").then(function (list) {
      var body = $("signals-pending-body");
      clear(body);
      list.forEach(function (s) {
        var tr = make("tr");
        tr.setAttribute("data-signal", s.id);
        signalCells(tr, s);
        cell(tr, fmtPrice(s.observed_price, s.stock_code), "num");
        cell(tr, s.status_label);
        cell(tr, Math.round(s.age_seconds) + " 秒 / " + s.max_age + " 秒", "num");
        var actions = cell(tr, "");
        var b = make("button", "small primary", "执行");
        b.type = "button";
        b.disabled = !!auto;
        b.title = auto ? "自动交易已开启，信号会自动执行" : "按现价重新检查后执行该信号";
        b.addEventListener("click", function () { executeSignal(s); });
        actions.appendChild(b);
        [["忽略", false, "忽略这条信号"], ["本轮不再提示", true, "忽略，并在本轮持仓内不再提示同一信号"]].forEach(function (d) {
          var x = make("button", "small", d[0]);
          x.type = "button";
          x.title = d[2];
          x.setAttribute("data-dismiss", d[1] ? "snooze" : "once");
          x.addEventListener("click", function () { dismissSignal(s, d[1]); });
          actions.appendChild(x);
        });
        body.appendChild(tr);
      });
      if (!list.length) { var tr = make("tr"); cell(tr, "没有待执行的信号", "muted").colSpan = 11; body.appendChild(tr); }
    }, function (err) { showError("signals-msg", err); });
    get("/api/signals/history?limit=200" + A.formQuery($("signals-filter")).replace(/^\?/, "&")).then(function (list) {
      var body = $("signals-history-body");
      clear(body);
      list.forEach(function (s) {
        var tr = make("tr");
        signalCells(tr, s);
        cell(tr, s.status_label, s.status === "executed" ? "ok-dot" : (s.status === "rejected" ? "bad-dot" : "muted"));
        cell(tr, s.reason || "");
        cell(tr, s.order_id || "");
        body.appendChild(tr);
      });
      if (!list.length) { var tr = make("tr"); cell(tr, "没有历史信号", "muted").colSpan = 10; body.appendChild(tr); }
    }, function (err) { showError("signals-msg", err); });
  }

  function signalCells(tr, s) {
    cell(tr, "#" + s.id);
    cell(tr, fmtTime(s.created_at));
    cell(tr, s.stock_code);
    cell(tr, s.rule_label);
    cell(tr, s.side_label, s.side === "buy" ? "up" : "down");
    cell(tr, fmtInt(s.volume), "num");
    cell(tr, fmtPrice(s.trigger_price, s.stock_code), "num");
  }

  function dismissSignal(s, snooze) {
    post("/api/actions/dismiss_signal", { signal_id: s.id, snooze: snooze }).then(function (r) {
      show("signals-msg", "信号 #" + r.id + " 已忽略" + (snooze ? "，本轮持仓内不再提示" : ""), "ok");
      loadSignals();
    }, function (err) { showError("signals-msg", err); loadSignals(); });
  }

  function executeSignal(s) {
    confirmDialog("执行信号", "信号 #" + s.id + "：" + s.stock_code + " " + s.rule_label + "，" + s.side_label + " " +
      fmtInt(s.volume) + " 股（检测时价格 " + fmtPrice(s.observed_price, s.stock_code) + "）。将按现价重新检查条件，" +
      "仍成立则立即下单，否则显示不执行的原因。确认执行？").then(function (yes) {
      if (!yes) return;
      post("/api/actions/execute_trading_signal", { signal_id: s.id }).then(function (r) {
        show("signals-msg", "信号 #" + r.id + " 已执行，委托号 " + r.order_id, "ok");
        loadSignals();
      }, function (err) { showError("signals-msg", err); loadSignals(); });
    });
  }

  A.loadSignals = loadSignals;
})();
