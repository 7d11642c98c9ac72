/* The orders tab (委托 list, 撤单) and the trade records tab (成交 list, CSV export).
   Part of the main page (index.html): shares window.QmtApp (app_state.js) with the other parts; app.js wires them. */
(function () {
  "use strict";

  var Q = window.Qmt, A = window.QmtApp;
  var $ = Q.$, make = Q.make, cell = Q.cell, clear = Q.clear, fmtPrice = Q.fmtPrice, fmtMoney = Q.fmtMoney;
  var fmtInt = Q.fmtInt, fmtTime = Q.fmtTime, show = Q.show, showError = Q.showError, headers = Q.headers;
  var ApiError = Q.ApiError, get = Q.get, post = Q.post, confirmDialog = Q.confirmDialog;

  // ---- orders ------------------------------------------------------------------------------------
  var OPEN_STATES = ["pending_submit", "submitted", "open", "partially_filled", "unknown"];

  function formQuery(form) {
    var params = [];
    Array.prototype.forEach.call(form.elements, function (e) {
      if (e.name && e.value.trim()) params.push(encodeURIComponent(e.name) + "=" + encodeURIComponent(e.value.trim()));
    });
    return params.length ? "?" + params.join("&") : "";
  }

  function loadOrders() {
    get("/api/orders" + formQuery($("orders-form"))).then(function (list) {
      var body = $("orders-body");
      clear(body);
      list.forEach(function (o) {
        var tr = make("tr");
        tr.setAttribute("data-order", o.client_id || o.order_id || "");
        cell(tr, fmtTime(o.time || o.created_at));
        cell(tr, o.client_id || o.order_id || "");
        cell(tr, o.stock_code);
        cell(tr, o.side_label || o.side, o.side === "buy" ? "up" : "down");
        cell(tr, fmtPrice(o.price, o.stock_code), "num");
        cell(tr, fmtInt(o.volume), "num");
        cell(tr, fmtInt(o.filled_volume), "num");
        cell(tr, o.status_label || o.status);
        cell(tr, o.rule_label || o.rule || "");
        cell(tr, o.reason || "");
        var actions = cell(tr, "");
        if (OPEN_STATES.indexOf(o.status) >= 0) {
          var b = make("button", "small", "撤单");
          b.type = "button";
          b.addEventListener("click", function () { cancelOrder(o.client_id || o.order_id); });
          actions.appendChild(b);
        }
        body.appendChild(tr);
      });
      if (!list.length) { var tr = make("tr"); cell(tr, "没有符合条件的委托", "muted").colSpan = 11; body.appendChild(tr); }
    }, function (err) { showError("orders-msg", err); });
  }

  function cancelOrder(id) {
    confirmDialog("确认撤单", "撤销委托 " + id + "？").then(function (yes) {
      if (!yes) return;
      post("/api/actions/cancel_order", { order_id: id }).then(function (r) {
        show("orders-msg", r.message, "ok");
        loadOrders();
      }, function (err) { showError("orders-msg", err); });
    });
  }

  // ---- trade records -----------------------------------------------------------------------------
  function loadTrades() {
    get("/api/trade-records" + formQuery($("trades-form"))).then(function (list) {
      var body = $("trades-body");
      clear(body);
      list.forEach(function (r) {
        var tr = make("tr");
        cell(tr, fmtTime(r.trade_time || r.time));
        cell(tr, r.stock_code);
        cell(tr, r.stock_name || r.stock_code);
        cell(tr, r.side_label || r.side, r.side === "buy" ? "up" : "down");
        cell(tr, fmtPrice(r.price, r.stock_code), "num");
        cell(tr, fmtInt(r.volume), "num");
        cell(tr, fmtMoney(r.amount), "num");
        cell(tr, fmtMoney(r.fees != null ? r.fees : r.commission), "num");
        cell(tr, r.rule_label || r.rule || r.strategy || "");
        cell(tr, r.client_id || r.order_id || "");
        body.appendChild(tr);
      });
      if (!list.length) { var tr = make("tr"); cell(tr, "没有成交记录", "muted").colSpan = 10; body.appendChild(tr); }
      show("trades-msg", "");
    }, function (err) { showError("trades-msg", err); });
  }

  function exportTrades() {
    var query = formQuery($("trades-form"));
    var url = "/api/trade-records" + (query ? query + "&" : "?") + "format=csv";
    fetch(Q.apiUrl(url), { headers: headers({ "Accept": "text/csv" }), cache: "no-store" }).then(function (response) {
      if (!response.ok) {
        return response.json().then(function (p) { throw new ApiError(response.status, p, "导出失败"); });
      }
      return response.blob().then(function (blob) {
        var link = make("a");
        link.href = URL.createObjectURL(blob);
        link.download = "成交记录.csv";
        document.body.appendChild(link);
        link.click();
        setTimeout(function () { URL.revokeObjectURL(link.href); link.remove(); }, 1000);
        show("trades-msg", "已导出 CSV", "ok");
      });
    }).catch(function (err) { showError("trades-msg", err); });
  }

  A.formQuery = formQuery; A.loadOrders = loadOrders; A.loadTrades = loadTrades; A.exportTrades = exportTrades;
})();
