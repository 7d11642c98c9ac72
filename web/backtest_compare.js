/* The 「回测对比」 page: the latest `backtest.py compare` result — where the backtest started (the account's
   cash and positions), the cost of each cause, then every trade
   (matched with its slippage, missing in the account with the recorded reason, extra in the account). */
(function () {
  "use strict";

  var Q = window.Qmt;
  var $ = Q.$, make = Q.make, cell = Q.cell, clear = Q.clear, fmtMoney = Q.fmtMoney, get = Q.get;
  var KINDS = { matched: "一致", shifted: "日期不同", missing: "账户缺少", extra: "账户多出" };
  var SIDES = { buy: "买入", sell: "卖出" };

  function load() {
    Q.show("compare-msg", "");
    return get("/api/backtest/compare").then(function (result) {
      if (result.available) render(result); else empty(result.message);
    }, function (err) {
      empty("");
      Q.showError("compare-msg", err);
    });
  }

  /* No result yet: a normal state with the command that makes one, not an error. */
  function empty(message) {
    $("compare-period").textContent = "";
    $("compare-starting").textContent = "";
    [["compare-summary-body", 4], ["compare-rows-body", 12]].forEach(function (t) {
      var body = $(t[0]);
      clear(body);
      if (!message) return;
      var row = make("tr");
      row.className = "empty";
      cell(row, t[0] === "compare-summary-body" ? message : "暂无逐笔对比", "muted").colSpan = t[1];
      body.appendChild(row);
    });
  }

  function startingText(starting) {
    if (!starting || starting.cash == null) return "";
    var held = (starting.positions || []).map(function (p) { return p.stock_code + " " + p.volume + " 股"; });
    var text = "回测起点：现金 " + fmtMoney(starting.cash) + " 元（来源：" + starting.cash_source + "），持仓 " +
      (held.length ? held.join("、") : "无");
    if (starting.without_data && starting.without_data.length) {
      text += "；起点持仓中没有行情数据、未计入回测：" + starting.without_data.join("、");
    }
    return text;
  }

  function render(result) {
    $("compare-period").textContent = "区间：" + result.start + " ~ " + result.end;
    $("compare-starting").textContent = startingText(result.starting);
    var summary = $("compare-summary-body");
    clear(summary);
    Object.keys(result.causes).forEach(function (cause) {
      var entry = result.causes[cause];
      var row = make("tr");
      row.setAttribute("data-cause", cause);
      cell(row, result.labels[cause] || cause);
      cell(row, String(entry.count), "num");
      cell(row, fmtMoney(entry.amount), "num");
      cell(row, cause === "matched" ? fmtMoney(entry.slippage_cny) : "--", "num");
      summary.appendChild(row);
    });
    var body = $("compare-rows-body");
    clear(body);
    result.rows.forEach(function (r) {
      var row = make("tr");
      row.setAttribute("data-kind", r.kind);
      cell(row, r.day);
      cell(row, r.stock_code);
      cell(row, SIDES[r.side] || r.side);
      cell(row, r.rule);
      var plain = r.kind === "matched" || r.kind === "shifted";
      cell(row, (KINDS[r.kind] || r.kind) + (plain ? "" : "：" + (result.labels[r.cause] || r.cause)));
      cell(row, r.backtest_volume == null ? "--" : String(r.backtest_volume), "num");
      cell(row, r.backtest_price == null ? "--" : Number(r.backtest_price).toFixed(3), "num");
      cell(row, r.account_volume == null ? "--" : String(r.account_volume), "num");
      cell(row, r.account_price == null ? "--" : Number(r.account_price).toFixed(3), "num");
      cell(row, r.slippage_cny == null ? "--" : fmtMoney(r.slippage_cny), "num");
      cell(row, r.slippage_bps == null ? "--" : Number(r.slippage_bps).toFixed(1), "num");
      cell(row, r.reason || "");
      body.appendChild(row);
    });
  }

  Q.registerPage("compare", load);
})();
