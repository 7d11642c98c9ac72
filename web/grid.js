/* The grid tab: grid sessions with their P&L, their fills, stop, and start with the proposed amount per grid.
   Part of the main page (index.html): shares window.QmtApp (app_state.js) with the other parts; app.js wires them. */
(function () {
  "use strict";

  var Q = window.Qmt, A = window.QmtApp, state = A.state;
  var $ = Q.$, make = Q.make, cell = Q.cell, clear = Q.clear, fmtPrice = Q.fmtPrice, fmtMoney = Q.fmtMoney;
  var fmtInt = Q.fmtInt, signClass = Q.signClass, fmtTime = Q.fmtTime, numberField = Q.numberField, show = Q.show;
  var showError = Q.showError, get = Q.get, post = Q.post, confirmDialog = Q.confirmDialog;

  // ---- grid --------------------------------------------------------------------------------------
  function loadGrid() {
    var on = state.status ? !!state.status.switches.ENABLE_GRID_TRADING : null;
    var note = $("grid-switch-state");
    note.textContent = on === null ? "" : (on ? "网格交易开关：已开启（运行中的网格按网格规则下单）"
      : "网格交易开关：已关闭（网格会话不会下单；启动网格时可一并开启）");
    note.className = on === false ? "msg warn" : "muted";
    get("/api/grid/sessions").then(function (list) {
      $("grid-form").hidden = false;
      var body = $("grid-body");
      clear(body);
      list.forEach(function (s) {
        var code = s.stock_code;
        var tr = make("tr");
        tr.setAttribute("data-grid", s.id);
        cell(tr, "#" + s.id);
        cell(tr, code);
        var idle = s.status === "active" && on === false;
        cell(tr, idle ? s.status_label + "（开关关闭，不交易）" : s.status_label,
          s.status === "active" && !idle ? "ok-dot" : "muted");
        cell(tr, fmtPrice(s.center_price, code), "num");
        cell(tr, s.status === "active" ? fmtPrice(s.next_buy_price, code) : "--", "num");
        cell(tr, s.status === "active" ? fmtPrice(s.next_sell_price, code) : "--", "num");
        cell(tr, fmtInt(s.net_volume), "num");
        cell(tr, fmtMoney(s.invested), "num");
        var why = s.pnl_explain || {};
        cell(tr, fmtMoney(s.round_trip_pnl), "num " + signClass(s.round_trip_pnl)).title = why.round_trip || "";
        cell(tr, fmtMoney(s.unrealized_pnl), "num " + signClass(s.unrealized_pnl)).title = why.unrealized || "";
        cell(tr, fmtMoney(s.fees), "num").title = why.fees || "";
        cell(tr, fmtMoney(s.total_pnl), "num " + signClass(s.total_pnl)).title = why.total || "";
        cell(tr, s.buy_count + " / " + s.sell_count, "num");
        cell(tr, s.start_date || "");
        cell(tr, s.end_reason_label || "");
        var actions = cell(tr, "");
        var fills = make("button", "small", "成交");
        fills.type = "button";
        fills.addEventListener("click", function () { loadGridTrades(s); });
        actions.appendChild(fills);
        if (s.status === "active") {
          var b = make("button", "small danger", "停止");
          b.type = "button";
          b.addEventListener("click", function () { stopGrid(s); });
          actions.appendChild(b);
        }
        body.appendChild(tr);
      });
      if (!list.length) { var tr = make("tr"); cell(tr, "没有网格会话", "muted").colSpan = 16; body.appendChild(tr); }
      if (state.gridShown) {
        var shown = list.filter(function (s) { return s.id === state.gridShown; })[0];
        if (shown) loadGridTrades(shown);
      }
    }, function (err) {
      if (err.code === "GRID_UNAVAILABLE") $("grid-form").hidden = true;
      showError("grid-msg", err);
    });
  }

  function loadGridTrades(s) {
    state.gridShown = s.id;
    get("/api/grid/sessions/" + s.id + "/trades").then(function (trades) {
      $("grid-trades-panel").hidden = false;
      $("grid-trades-title").textContent = "网格 #" + s.id + " " + s.stock_code + " 的成交（网格盈亏 " +
        fmtMoney(s.total_pnl) + " 元）";
      var body = $("grid-trades-body");
      clear(body);
      trades.forEach(function (t) {
        var tr = make("tr");
        tr.setAttribute("data-grid-fill", t.fill_id);
        cell(tr, fmtTime(t.time));
        cell(tr, t.side_label || t.side, t.side === "buy" ? "up" : "down");
        cell(tr, fmtPrice(t.price, t.stock_code), "num");
        cell(tr, fmtInt(t.volume), "num");
        cell(tr, fmtMoney(t.amount), "num");
        cell(tr, fmtMoney(t.fees), "num");
        cell(tr, fmtInt(t.net_volume_after), "num");
        cell(tr, fmtMoney(t.realized_pnl_after), "num " + signClass(t.realized_pnl_after));
        body.appendChild(tr);
      });
      if (!trades.length) { var tr = make("tr"); cell(tr, "该网格还没有成交", "muted").colSpan = 8; body.appendChild(tr); }
    }, function (err) { showError("grid-msg", err); });
  }

  function stopGrid(s) {
    confirmDialog("停止网格", "停止 " + s.stock_code + " 的网格会话 #" + s.id + "？").then(function (yes) {
      if (!yes) return;
      post("/api/grid/sessions/" + s.id + "/stop").then(function () {
        show("grid-msg", "网格会话 #" + s.id + " 已停止", "ok");
        loadGrid();
      }, function (err) { showError("grid-msg", err); });
    });
  }

  function startGrid(ev) {
    ev.preventDefault();
    var form = ev.target;
    var payload = { stock_code: form.stock_code.value.trim() };
    ["GRID_STEP_RATIO", "GRID_BUY_AMOUNT", "GRID_MAX_INVESTMENT"].forEach(function (key) {
      var value = numberField(form[key].value);
      if (value !== undefined) payload[key] = value;
    });
    post("/api/grid/sessions", payload).then(function (s) {
      show("grid-msg", "已启动网格会话 #" + s.id + "：" + s.stock_code + " 中心价 " + fmtPrice(s.center_price, s.stock_code) +
        "，下一买入价 " + fmtPrice(s.next_buy_price, s.stock_code) + "，下一卖出价 " + fmtPrice(s.next_sell_price, s.stock_code), "ok");
      A.loadStatus().then(loadGrid);
    }, function (err) {
      if (err.code !== "GRID_TRADING_OFF") { showError("grid-msg", err); return; }
      // The switch is off: a session would never trade. Offer to switch it on, then start.
      confirmDialog("开启网格交易", err.message + "\n开启「网格交易」开关并启动这个网格？").then(function (yes) {
        if (!yes) { showError("grid-msg", err); return; }
        post("/api/config/update", { changes: { ENABLE_GRID_TRADING: true } }).then(function () {
          startGrid({ preventDefault: function () {}, target: form });
        }, function (e) { showError("grid-msg", e); });
      });
    });
  }

  /* On a stock code: the amount per grid the form proposes (one lot at the centre price at least). A new code
     first clears the previous code's hint and the amount the form filled in for it (an amount the person typed
     stays); an answer for an older code is dropped. */
  var gridAsked = 0;
  function proposeGrid() {
    var form = $("grid-form"), code = form.stock_code.value.trim(), amount = form.GRID_BUY_AMOUNT;
    var seq = ++gridAsked;
    show("grid-proposal", "");
    if (amount.getAttribute("data-proposed") === amount.value) amount.value = "";
    amount.removeAttribute("data-proposed");
    if (!code) return;
    get("/api/grid/proposal/" + encodeURIComponent(code)).then(function (p) {
      if (seq !== gridAsked) return;
      if (!p.enough && !amount.value.trim()) {
        amount.value = String(p.proposed_amount);
        amount.setAttribute("data-proposed", amount.value);
      }
      show("grid-proposal", p.enough ? "每格 " + p.configured_amount + " 元在中心价 " + fmtPrice(p.center_price, p.stock_code) +
        " 可买 " + Math.floor(p.configured_amount / p.center_price / p.lot) * p.lot + " 股" : p.message, p.enough ? "" : "warn");
    }, function (err) { if (seq === gridAsked) showError("grid-proposal", err); });
  }

  A.loadGrid = loadGrid; A.startGrid = startGrid; A.proposeGrid = proposeGrid;
})();
