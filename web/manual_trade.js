/* The manual trading tab: buy, sell and random pool buy forms, checked by the server before the confirmation
   (可买 / 可卖 shown under each form), and the one-line text of a placed order.
   Part of the main page (index.html): shares window.QmtApp (app_state.js) with the other parts; app.js wires them. */
(function () {
  "use strict";

  var Q = window.Qmt, A = window.QmtApp;
  var $ = Q.$, fmtPrice = Q.fmtPrice, fmtMoney = Q.fmtMoney, fmtInt = Q.fmtInt, numberField = Q.numberField;
  var show = Q.show, showError = Q.showError, post = Q.post, confirmDialog = Q.confirmDialog;

  // ---- manual trading ----------------------------------------------------------------------------
  function toggleBy(form, name) {
    var by = form.querySelector('input[name="' + name + '"]:checked').value;
    Array.prototype.forEach.call(form.querySelectorAll("[data-by]"), function (label) {
      label.hidden = label.getAttribute("data-by") !== by;
    });
    return by;
  }

  /* POST /api/actions/check_order: the server runs every pre-trade check of the real order (lot, limit
     prices, cash and position cap, available shares, trading state) without placing anything, so the page
     validates exactly as the order would be and shows 可买/可卖 before anything is confirmed. */
  function checkOrder(side, payload) {
    var body = { side: side };
    Object.keys(payload).forEach(function (k) { body[k] = payload[k]; });
    return post("/api/actions/check_order", body);
  }

  function capacityText(c) {
    if (c.max_volume == null) return c.ok ? "" : Q.errorText(c);
    var text = (c.side === "buy" ? "可买 " : "可卖 ") + fmtInt(c.max_volume) + " 股";
    if (c.side === "buy" && c.price) text += "（按委托价 " + fmtPrice(c.price, c.stock_code) + " 元，计入资金、单笔与仓位上限）";
    return text;
  }

  /* 可买 / 可卖 under a form, refreshed when its code (or limit price) changes; an old answer never
     overwrites a newer one. */
  function watchCapacity(form, side, box) {
    var asked = 0;
    function refresh() {
      var code = form.stock_code.value.trim();
      var seq = ++asked;
      $(box).textContent = "";
      if (!code) return;
      var body = { stock_code: code };
      var price = numberField(form.price.value);
      var by = form.querySelector('input[type="radio"]:checked').value;
      if (price !== undefined && by === "volume") body.price = price;  // a limit price goes with a volume only
      checkOrder(side, body).then(function (c) {
        if (seq === asked) $(box).textContent = capacityText(c);
      }, function (err) { if (seq === asked) $(box).textContent = Q.errorText(err); });
    }
    ["stock_code", "price"].forEach(function (name) { form[name].addEventListener("change", refresh); });
    Array.prototype.forEach.call(form.querySelectorAll('input[type="radio"]'), function (r) {
      r.addEventListener("change", refresh);
    });
    return refresh;
  }

  /* Check first; the dialog only ever shows an order that passes every check, with its real volume. */
  function checkThenConfirm(side, payload, msg, title, extra) {
    show(msg, "");
    return checkOrder(side, payload).then(function (c) {
      if (!c.ok) {
        var told = c.max_volume == null || /可买|可卖/.test(c.message);
        show(msg, Q.errorText(c) + (told ? "" : "；" + capacityText(c)), "error");
        return false;
      }
      return confirmDialog(title, c.side_label + " " + c.stock_code + "：" + fmtInt(c.volume) + " 股，委托价 " +
        fmtPrice(c.price, c.stock_code) + " 元，约 " + fmtMoney(c.amount) + " 元（" + capacityText(c) + "）。" +
        (extra || "") + "确认下单？");
    }, function (err) { showError(msg, err); return false; });
  }

  function submitBuy(ev) {
    ev.preventDefault();
    var form = ev.target, by = toggleBy(form, "buy_by");
    var payload = { stock_code: form.stock_code.value.trim() };
    if (by === "amount") {
      payload.amount = numberField(form.amount.value);
    } else {
      payload.volume = numberField(form.volume.value);
      var price = numberField(form.price.value);
      if (price !== undefined) payload.price = price;
    }
    checkThenConfirm("buy", payload, "buy-msg", "确认买入").then(function (yes) {
      if (!yes) return;
      post("/api/actions/execute_buy", payload).then(function (order) {
        show("buy-msg", "买入委托已提交：" + orderSummary(order), "ok");
      }, function (err) { showError("buy-msg", err); });
    });
  }

  function submitPoolBuy(ev) {
    ev.preventDefault();
    var form = ev.target;
    var payload = { from_pool: true, count: numberField(form.count.value) };
    var amount = numberField(form.amount.value);
    if (amount !== undefined) payload.amount = amount;
    confirmDialog("确认随机买入", "从股票池随机选 " + form.count.value.trim() + " 只未持有的股票买入？").then(function (yes) {
      if (!yes) return;
      post("/api/actions/execute_buy", payload).then(function (r) {
        var lines = r.results.map(function (x) {
          return x.ok ? "✓ " + orderSummary(x.order) : "✗ " + x.stock_code + "：" + x.message;
        });
        show("pool-buy-msg", "已下单 " + r.placed + " / " + r.results.length + " 只\n" + lines.join("\n"),
          r.placed === r.results.length ? "ok" : "warn");
      }, function (err) { showError("pool-buy-msg", err); });
    });
  }

  function submitSell(ev) {
    ev.preventDefault();
    var form = ev.target, by = toggleBy(form, "sell_by");
    var payload = { stock_code: form.stock_code.value.trim(), confirm: true };
    if (by === "volume") {
      payload.volume = numberField(form.volume.value);
      var price = numberField(form.price.value);
      if (price !== undefined) payload.price = price;
    } else {
      payload.ratio = numberField(form.ratio.value);
    }
    checkThenConfirm("sell", payload, "sell-msg", "确认卖出", QmtOperator.haltNote()).then(function (yes) {
      if (!yes) return;
      post("/api/actions/execute_sell", payload).then(function (order) {
        show("sell-msg", "卖出委托已提交：" + orderSummary(order), "ok");
      }, function (err) { showError("sell-msg", err); });
    });
  }

  function orderSummary(o) {
    var text = (o.side_label || "") + " " + o.stock_code + " " + fmtInt(o.volume) + " 股，委托价 " +
      fmtPrice(o.price, o.stock_code) + "，委托号 " + (o.client_id || o.order_id || "") + "，状态 " + (o.status_label || o.status);
    if (o.filled_volume > 0) {
      text += "，已成交 " + fmtInt(o.filled_volume) + " 股，均价 " + fmtPrice(o.filled_amount / o.filled_volume, o.stock_code);
    }
    return text;
  }

  A.toggleBy = toggleBy; A.watchCapacity = watchCapacity; A.checkThenConfirm = checkThenConfirm;
  A.submitBuy = submitBuy; A.submitPoolBuy = submitPoolBuy; A.submitSell = submitSell; A.orderSummary = orderSummary;
})();
