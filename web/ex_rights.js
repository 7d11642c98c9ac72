/* The 「除权除息」 tab (issue 28 §2, GET /api/ex_rights): each ex-date the daemon adjusted its own price levels
   for (stock, plan, factor, old → new levels), newest first; it builds its own section and adds it with
   Qmt.addTab. */
(function () {
  "use strict";

  var Q = window.Qmt;

  function build() {
    var section = Q.make("section");
    var panel = Q.make("div", "panel");
    panel.appendChild(Q.make("h2", null, "除权除息调整"));
    panel.appendChild(Q.make("p", "muted", "除权除息日开盘前，本程序按因子（除权参考价 ÷ 前收盘价）调整自己保存的价位：" +
      "最高价、成本价、补仓基准价、止损价、网格价位和盯盘价格，避免跳空误触发止损或动态止盈。"));
    var msg = Q.make("div", "msg");
    msg.id = "ex-rights-msg";
    msg.hidden = true;
    panel.appendChild(msg);
    var wrap = Q.make("div", "table-wrap");
    var table = Q.make("table", "table");
    var head = Q.make("thead");
    var row = Q.make("tr");
    ["除权除息日", "股票", "方案", "因子", "状态", "调整"].forEach(function (t) { row.appendChild(Q.make("th", null, t)); });
    head.appendChild(row);
    table.appendChild(head);
    var body = Q.make("tbody");
    body.id = "ex-rights-body";
    table.appendChild(body);
    wrap.appendChild(table);
    panel.appendChild(wrap);
    section.appendChild(panel);
    return section;
  }

  function load() {
    return Q.get("/api/ex_rights").then(render, function (err) { Q.showError("ex-rights-msg", err); });
  }

  function render(data) {
    var body = Q.$("ex-rights-body");
    Q.clear(body);
    data.events.forEach(function (e) {
      var row = Q.make("tr");
      row.setAttribute("data-key", e.key);
      Q.cell(row, e.ex_date);
      Q.cell(row, e.stock_code);
      Q.cell(row, e.description);
      Q.cell(row, e.factor.toFixed(6));
      Q.cell(row, e.status_label, e.status === "applied" ? "level-ok" : "level-warning");
      Q.cell(row, e.message).style.whiteSpace = "pre-wrap";
      body.appendChild(row);
    });
    if (!data.available) {
      Q.show("ex-rights-msg", "未配置除权除息数据来源：实盘从 miniQMT 行情读取（EX_RIGHTS_FROM_XTDATA），" +
        "回放不复权日线时请设置事件文件 EX_RIGHTS_EVENTS_FILE。", "warn");
    } else if (!data.events.length) {
      Q.show("ex-rights-msg", "还没有除权除息调整记录。");
    } else {
      Q.show("ex-rights-msg", "共 " + data.events.length + " 条记录");
    }
  }

  Q.addTab("ex_rights", "除权除息", build());  // the script runs at the end of <body>: #tabs and <main> exist
  Q.registerPage("ex_rights", load);
})();
