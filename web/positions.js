/* The positions tab's live table (rows updated in place from every positions snapshot) and its sell buttons.
   Part of the main page (index.html): shares window.QmtApp (app_state.js) with the other parts; app.js wires them. */
(function () {
  "use strict";

  var Q = window.Qmt, A = window.QmtApp, state = A.state;
  var $ = Q.$, make = Q.make, cell = Q.cell, clear = Q.clear, fmtPrice = Q.fmtPrice, fmtMoney = Q.fmtMoney;
  var fmtInt = Q.fmtInt, fmtPct = Q.fmtPct, signClass = Q.signClass, show = Q.show, showError = Q.showError;
  var post = Q.post;

  // ---- positions (live) --------------------------------------------------------------------------
  var rows = {};
  var POS_COLUMNS = 15;

  function renderPositions(snapshot) {
    state.snapshot = snapshot;
    $("pos-version").textContent = "更新于 " + new Date().toLocaleTimeString("zh-CN", { hour12: false });
    var body = $("positions-body");
    var seen = {};
    if (!snapshot.positions.length) {
      rows = {};
      clear(body);
      var tr = make("tr"); cell(tr, "当前没有持仓", "muted").colSpan = POS_COLUMNS; body.appendChild(tr);
      return;
    }
    if (body.querySelector("td[colspan]")) clear(body);
    snapshot.positions.forEach(function (p) {
      seen[p.stock_code] = true;
      var row = rows[p.stock_code];
      if (!row) {
        row = rows[p.stock_code] = newPositionRow(p.stock_code);
      }
      body.appendChild(row.tr);  // keeps the order of the snapshot (by code)
      updatePositionRow(row, p);
    });
    Object.keys(rows).forEach(function (code) {
      if (!seen[code]) { body.removeChild(rows[code].tr); delete rows[code]; }
    });
    if (state.chartCode && state.tab === "positions") A.applyLevels();
  }

  function newPositionRow(code) {
    var tr = make("tr");
    tr.setAttribute("data-code", code);
    var cells = [];
    var heads = document.querySelectorAll("#positions-table thead th");  // labels of the phone's card layout
    for (var i = 0; i < POS_COLUMNS - 1; i++) {
      cells.push(cell(tr, "", i >= 2 ? "num" : ""));
      cells[i].setAttribute("data-label", heads[i] ? heads[i].textContent : "");
    }
    var actions = cell(tr, "", "actions-cell");
    var chartBtn = make("button", "small", "图表");
    chartBtn.type = "button";
    chartBtn.addEventListener("click", function () { A.openChart(code); });
    var half = make("button", "small sell", "卖出一半");
    half.type = "button";
    half.setAttribute("data-action", "sell-half");
    half.addEventListener("click", function () { sellFromRow(code, 0.5); });
    var all = make("button", "small sell", "全部卖出");
    all.type = "button";
    all.setAttribute("data-action", "sell-all");
    all.addEventListener("click", function () { sellFromRow(code, 1); });
    var params = make("button", "small", "参数");
    params.type = "button";
    params.title = "个股参数（止损、止盈、补仓等）与持仓规则状态";
    params.setAttribute("data-action", "stock-params");
    params.addEventListener("click", function () { if (window.QmtWatch) window.QmtWatch.editStock(code); });
    actions.appendChild(chartBtn); actions.appendChild(document.createTextNode(" "));
    actions.appendChild(params); actions.appendChild(document.createTextNode(" "));
    actions.appendChild(half); actions.appendChild(document.createTextNode(" "));
    actions.appendChild(all);
    return { tr: tr, cells: cells, buttons: [half, all] };
  }

  /* 「下一补仓价」: 第N档 and its price; 「额度不足」 when the budget buys no lot there; unreachable below the stop. */
  function nextAddText(a, code) {
    if (!a) return "--";
    if (a.state === "budget_short") return "额度不足";
    return fmtPrice(a.price, code) + "（" + a.label + (a.state === "below_stop" ? "，低于止损价，无法到达" : "") + "）";
  }

  function updatePositionRow(row, p) {
    var c = row.cells, code = p.stock_code, t = p.trigger_prices || {};
    var reason = p.untradable_reason || "";  // issue 28: an instrument the rules leave alone, shown with why
    var values = [
      code, p.stock_name || code, fmtInt(p.volume), fmtInt(p.available), fmtPrice(p.cost_price, code),
      fmtPrice(p.current_price, code), fmtPct(p.profit_ratio), p.profit_amount == null ? "--" : fmtMoney(p.profit_amount),
      fmtMoney(p.market_value), fmtPrice(p.highest_price, code), fmtPrice(t.stop_loss_price, code),
      fmtPrice(t.take_profit_price, code), fmtPrice(t.dynamic_stop_price, code),
      reason ? "不按规则交易" : nextAddText(p.next_add, code)
    ];
    values.forEach(function (v, i) { if (c[i].textContent !== v) c[i].textContent = v; });
    c[13].title = reason || (p.next_add ? p.next_add.explain : "");
    row.tr.title = reason;
    row.tr.setAttribute("data-untradable", reason ? "true" : "false");
    c[13].setAttribute("data-add-state", p.next_add ? p.next_add.state : "none");
    c[5].className = "num " + signClass(p.profit_ratio);
    c[6].className = "num " + signClass(p.profit_ratio);
    c[7].className = "num " + signClass(p.profit_amount);
    row.buttons.forEach(function (b) { b.disabled = !!reason || !(p.available > 0); });
    row.buttons.forEach(function (b) { b.title = reason || (p.available > 0 ? "" : "没有可卖数量（T+1）"); });
  }

  function sellFromRow(code, ratio) {
    var p = (state.snapshot.positions || []).filter(function (x) { return x.stock_code === code; })[0];
    var what = QmtOperator.sellText(code, p ? p.available : 0, ratio) + "。";
    A.checkThenConfirm("sell", { stock_code: code, ratio: ratio, confirm: true }, "pos-msg", "确认卖出",
      what + QmtOperator.haltNote())
      .then(function (yes) {
        if (!yes) return;
        post("/api/actions/execute_sell", { stock_code: code, ratio: ratio, confirm: true }).then(function (order) {
          show("pos-msg", "卖出委托已提交：" + A.orderSummary(order), "ok");
        }, function (err) { showError("pos-msg", err); });
      });
  }

  A.renderPositions = renderPositions;
})();
